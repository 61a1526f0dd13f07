"""``asymlora run``: one task × method × rank × seed (over one learning rate or a sweep)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EPILOG = """\
examples:
  asymlora run --task sentiment --method b-only --rank 16 --seed 0
  asymlora run --task trec --method lora --rank 8 --sweep            # lr chosen on validation
  asymlora run --task my.csv --text-column review --label-column stars --method b-only
  asymlora run --list-methods

The run folder is OUT/<task>/<model>/<method>-r<rank>/seed<seed>/ (config.json, env.json,
metrics.jsonl, adapter/, result.json). Re-running the same command resumes a killed run from its
last checkpoint, or prints the finished result. See docs/EXPERIMENTS.md.
"""


def add_spec_options(p: argparse.ArgumentParser, *, grid: bool = False) -> None:
    """Options shared by ``run`` and ``grid`` (every default is None: RunSpec / the grid file decide)."""
    g = p.add_argument_group("model and data")
    g.add_argument("--model", help="built-in name (minilm [default], mpnet), a Hugging Face model folder, or a hub name")
    g.add_argument("--pooling", choices=("model", "mean"),
                   help="task head: the model's own (default; BERT reads [CLS] via its pooler) or a linear head on "
                        "mean-pooled token states (the readout sentence-transformers models were trained for)")
    g.add_argument("--max-length", type=int, help="truncate inputs to this many tokens (default 64)")
    g.add_argument("--max-train-examples", type=int,
                   help="train on a fixed random subset of this size (same subset for every method and seed)")
    g.add_argument("--max-val-examples", type=int,
                   help="validate on a fixed random subset of this size (quick runs only)")
    g.add_argument("--max-test-examples", type=int,
                   help="test on a fixed random subset of this size (quick runs only)")
    g.add_argument("--no-extra-tests", dest="extra_tests", action="store_const", const=False,
                   help="skip the task's out-of-domain test sets (e.g. tweets / Amazon / NYT for sentiment)")
    g.add_argument("--targets", nargs="+", metavar="NAME",
                   help="modules to adapt (default: the model's attention query and value projections)")
    f = p.add_argument_group("data files (when the task is a .csv / .tsv / .jsonl path)")
    for flag in ("text-column", "text-pair-column", "label-column", "split-column"):
        f.add_argument(f"--{flag}", metavar="COLUMN")
    f.add_argument("--task-kind", choices=("classification", "regression"),
                   help="default: inferred from the labels")
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
    x.add_argument("--out", default=None, help="results folder (default: runs)" if not grid else
                   "results folder (default: runs/grid)")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    x.add_argument("--threads", metavar="N|auto", help="CPU threads for torch (default: one per core; 'auto': leave "
                   "out the cores other processes keep busy)")
    x.add_argument("--list-methods", action="store_true", help="print the methods and exit")


SPEC_KEYS = ("model", "pooling", "max_length", "max_train_examples", "max_val_examples", "max_test_examples", "extra_tests",
             "targets", "lrs", "sweep", "epochs", "batch_size", "eval_batch_size", "warmup_ratio", "weight_decay", "max_grad_norm", "select",
             "mixed_precision", "checkpoint_every")
FILE_KEYS = ("text_column", "text_pair_column", "label_column", "split_column", "task_kind")


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
    if options:
        out["task_options"] = tuple(options.items())
    return out


def print_methods(file=None) -> None:
    from asymlora.experiments.methods import method_table

    file = file or sys.stdout
    rows = method_table()
    print(f"{'method':<18} {'paper notation':<20} {'default lr':>10}  {'sweep':<22} trains", file=file)
    for r in rows:
        sweep = ", ".join(f"{x:g}" for x in r["lr_sweep"])
        notation = r["notation"] + " " * max(0, 20 - display_width(r["notation"]))
        print(f"{r['name']:<18} {notation} {r['lr']:>10g}  {sweep:<22} {r['trains']}", file=file)


def display_width(text: str) -> int:
    """Printed width: combining marks (the hat of B̂) take no column."""
    import unicodedata

    return sum(0 if unicodedata.combining(ch) else 1 for ch in text)


def apply_threads(value, command: str) -> bool:
    """Set torch's thread count from ``--threads``; False (after printing why) on a bad value."""
    from asymlora.train.cpu import set_threads

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
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def register(subparsers) -> None:
    from asymlora.experiments.methods import METHODS

    p = subparsers.add_parser(
        "run", help="train one task × method × rank × seed and evaluate it",
        description="Train one adapter (or baseline) on one task with one seed: over the method's default "
                    "learning rate, the given one(s), or --sweep. Every learning rate trains on the train split "
                    "and is scored on validation; the best is chosen there, and the test split is evaluated once, "
                    "on the chosen adapter loaded back from disk.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default=None, help="built-in task (sentiment [default], sentiment-score, trec, "
                   "trec-fine, sms-spam, sarcasm), glue/<name> (online), or a .csv/.tsv/.jsonl file")
    p.add_argument("--method", default=None, metavar="METHOD",
                   help=f"one of: {', '.join(METHODS)} (default b-only)")
    p.add_argument("--rank", type=int, default=None, help="adapter rank r (default 8; alpha = 2r)")
    p.add_argument("--seed", type=int, default=None, help="seed of the head, the frozen factor and the data order (default 0)")
    add_spec_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.list_methods:
        print_methods()
        return 0
    quiet_libraries()
    if not apply_threads(args.threads, "run"):
        return 2
    from asymlora.experiments.run import RunBusy, RunConflict, RunSpec, run

    settings = spec_settings(args)
    for key in ("task", "method", "rank", "seed"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    try:
        spec = RunSpec(**settings)
    except (TypeError, ValueError) as err:
        print(f"asymlora run: {err}", file=sys.stderr)
        return 2
    out = args.out or "runs"
    try:
        result = run(spec, out, progress=not args.quiet)
    except (RunConflict, RunBusy) as err:
        print(f"asymlora run: {err}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as err:
        print(f"asymlora run: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print_result(result, out, spec)
    return 0


def print_result(result: dict[str, Any], out, spec) -> None:
    from pathlib import Path

    m = result["primary_metric"]
    print()
    print(f"{result['display']} on {result['task_label']} (model {result['model']}, seed {result['seed']})")
    print(f"  learning rate   {result['lr']:g}" + (
        f"  (chosen on validation from {', '.join(f'{x:g}' for x in result['lr_candidates'])})"
        if len(result["lr_candidates"]) > 1 else ""))
    print(f"  validation      {m} {result['val'].get(m, float('nan')):.4f} (epoch {result['selected_epoch']}/{result['epochs']})")
    print(f"  test            " + ", ".join(f"{k} {v:.4f}" for k, v in result["test"].items()))
    for name, metrics in (result.get("test_extra") or {}).items():
        print(f"  test {name:<10} {m} {metrics.get(m, float('nan')):.4f}")
    print(f"  trainable       {result['trainable_params']:,} parameters")
    print(f"  adapter file    {result['adapter_bytes']:,} bytes ({result['adapter_file']})")
    print(f"  training time   {result['train_seconds']:.1f} s")
    print(f"  run folder      {Path(out) / spec.relpath()}")
