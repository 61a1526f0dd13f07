"""What the experiment commands share: the run settings' flags, threads, quiet libraries, method listing."""

from __future__ import annotations

import argparse
import os
import sys
import unicodedata
import warnings
from typing import Any

from asymlora.config import DROPOUT_ON
from asymlora.experiments.methods import method_table
from asymlora.train.cpu import set_threads

SPEC_KEYS = ("model", "pooling", "max_length", "image_size", "max_train_examples", "max_val_examples",
             "max_test_examples", "max_train_eval_examples", "extra_tests", "targets", "dropout", "dropout_on", "lrs",
             "sweep", "epochs", "batch_size", "eval_batch_size", "warmup_ratio", "weight_decay", "max_grad_norm", "select",
             "mixed_precision", "checkpoint_every")
FILE_KEYS = ("text_column", "text_pair_column", "label_column", "split_column", "task_kind")


def add_spec_options(p: argparse.ArgumentParser, *, default_out: str) -> None:
    """Options shared by ``run`` and ``grid`` (every default is None: RunSpec / the grid file decide)."""
    g = p.add_argument_group("model and data")
    g.add_argument("--model", help="built-in name (minilm [default], mpnet, smollm2, ...: see 'asymlora info'), "
                                   "a Hugging Face model folder, or a hub name")
    g.add_argument("--pooling", choices=("model", "mean"),
                   help="text classification head: the model's own (default; BERT reads [CLS] via its pooler) or a "
                        "linear head on mean-pooled token states (the readout sentence-transformers models were "
                        "trained for)")
    g.add_argument("--max-length", type=int, help="truncate inputs to this many tokens (default: the task's, "
                                                   "64 for sentences, 256 for instruction data)")
    g.add_argument("--image-size", type=int, help="resize images to this side in pixels (default: the model's own)")
    g.add_argument("--max-train-examples", type=int,
                   help="train on a fixed random subset of this size (same subset for every method and seed)")
    g.add_argument("--max-val-examples", type=int,
                   help="validate on a fixed random subset of this size (quick runs only)")
    g.add_argument("--max-test-examples", type=int,
                   help="test on a fixed random subset of this size (quick runs only)")
    g.add_argument("--max-train-eval-examples", type=int,
                   help="score the train split (for the train − test gap) on a fixed part of the trained examples "
                        "(default: all of them)")
    g.add_argument("--no-extra-tests", dest="extra_tests", action="store_const", const=False,
                   help="skip the task's extra test sets (out-of-domain sets, other environments)")
    g.add_argument("--targets", nargs="+", metavar="NAME",
                   help="modules to adapt (default: the model's attention query and value projections)")
    g.add_argument("--dropout", type=float, metavar="P",
                   help="adapter dropout probability (default 0; adapter methods and peft-lora)")
    g.add_argument("--dropout-on", choices=DROPOUT_ON,
                   help="where adapter dropout acts: input = drop(x) (default; the paper's and PEFT's), "
                        "projection = drop(A·x), r-sized and cheaper (asymlora's adapter methods only)")
    f = p.add_argument_group("data files (when the task is a .csv / .tsv / .jsonl path)")
    for flag in ("text-column", "text-pair-column", "label-column", "split-column"):
        f.add_argument(f"--{flag}", metavar="COLUMN")
    f.add_argument("--task-kind", help="classification or regression (default: inferred from the labels), or another "
                                        "modality's file kind: instructions, summarisation (see docs/DATA.md)")
    g.add_argument("--task-option", action="append", metavar="KEY=VALUE", dest="task_option",
                   help="an option of the task's loader (repeatable), e.g. a subset size; see docs/DATA.md")
    o = p.add_argument_group("optimisation (AdamW, linear warm-up and decay, gradient clipping)")
    o.add_argument("--lr", type=float, nargs="+", metavar="LR", dest="lrs",
                   help="learning rate; several values are a sweep chosen on validation "
                        "(default: the method's default; see --list-methods)")
    o.add_argument("--sweep", action="store_const", const=True,
                   help="sweep the method's default learning rates (3 values) and choose on validation")
    o.add_argument("--epochs", type=int, help="default 3")
    o.add_argument("--batch-size", type=int, help="default 32")
    o.add_argument("--eval-batch-size", type=int, help="default 128")
    o.add_argument("--warmup-ratio", type=float, help="fraction of steps of linear warm-up (default 0.06)")
    o.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0)")
    o.add_argument("--max-grad-norm", type=float, help="clip the gradient norm (default 1.0; 0 disables)")
    o.add_argument("--select", choices=("best", "last"),
                   help="which epoch's weights to keep: best on validation (default) or last")
    o.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), help="on a GPU (default no)")
    o.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                   help="checkpoint every N optimizer steps, plus every epoch end (default 100; 0: epoch ends only)")
    x = p.add_argument_group("output")
    x.add_argument("--out", default=None, help=f"results folder (default: {default_out})")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads_option(x)
    x.add_argument("--list-methods", action="store_true", help="print the methods and exit")


def add_threads_option(group, default: str | None = None) -> None:
    group.add_argument("--threads", metavar="N|auto", default=default,
                       help="CPU threads for torch (default: " + ("one per core" if default is None else default)
                            + "; 'auto': leave out the cores other processes keep busy)")


def spec_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The RunSpec settings given on the command line (only those given)."""
    out = {k: getattr(args, k) for k in SPEC_KEYS if getattr(args, k, None) is not None}
    if "max_grad_norm" in out and out["max_grad_norm"] == 0:
        out["max_grad_norm"] = None
    if "lrs" in out:
        out["lrs"] = tuple(out["lrs"])
    if "targets" in out:
        out["targets"] = tuple(out["targets"])
    options = {k: getattr(args, k) for k in FILE_KEYS if getattr(args, k, None) is not None}
    for item in getattr(args, "task_option", None) or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--task-option takes KEY=VALUE, got {item!r}")
        options[key.strip().replace("-", "_")] = value.strip()
    if options:
        out["task_options"] = tuple(options.items())
    return out


def print_methods(file=None) -> None:
    file = file or sys.stdout
    print(f"{'method':<18} {'paper notation':<20} {'default lr':>10}  {'sweep':<22} trains", file=file)
    for r in method_table():
        sweep = ", ".join(f"{x:g}" for x in r["lr_sweep"])
        print(f"{r['name']:<18} {pad(r['notation'], 20)} {r['lr']:>10g}  {sweep:<22} {r['trains']}", file=file)


def display_width(text: str) -> int:
    """Printed width: combining marks (the hat of B̂) take no column."""
    return sum(0 if unicodedata.combining(ch) else 1 for ch in text)


def pad(text: str, width: int, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` printed columns (combining marks count as none)."""
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def apply_threads(value, command: str) -> bool:
    """Set torch's thread count from ``--threads``; False (after printing why) on a bad value."""
    try:
        line = set_threads(value)
    except ValueError as err:
        print(f"asymlora {command}: {err}", file=sys.stderr)
        return False
    if line:
        print(line)
    return True


def quiet_libraries() -> None:
    """Keep library chatter (load reports, weight-loading bars) out of the command's output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
