"""``asymlora demo``: the paper's main comparison in a few minutes on a laptop CPU.

Trains LoRA r=8, B-only r=8, B-only r=16 (as many trainable parameters as LoRA r=8) and A-only r=8
on the movie-review sentiment task with MiniLM-L6, one seed, and prints one table: metric, trainable
parameters, adapter file bytes, time.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

from asymlora.cli.options import add_threads_option, apply_threads, display_width, pad, quiet_libraries
from asymlora.experiments.loader import Loader
from asymlora.experiments.run import run
from asymlora.experiments.spec import RunConflict, RunSpec

DEMO_METHODS = (("lora", 8), ("b-only", 8), ("b-only", 16), ("a-only", 8))
DEFAULTS = dict(task="sentiment", model="minilm", seed=0, train_examples=1000, val_examples=400, epochs=2,
                batch_size=32, max_length=64, lr=3e-3)

EPILOG = f"""\
what it does (defaults chosen to finish in under 10 minutes on 2 CPU cores, the download included):
  data     the 'sentiment' task: 10,605 Rotten-Tomatoes movie-review sentences with human scores,
           neutral ones dropped, split 80/10/10 (7,651 / 956 / 956); every row trains on the same fixed
           random {DEFAULTS['train_examples']:,} training sentences, picks its epoch on {DEFAULTS['val_examples']} validation sentences
           and is tested once on all 956 test sentences
  model    all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M parameters), from a pinned pip package
  adapters on the attention query and value projections of every layer, alpha = 2r (the paper's setting);
           the classification head (385 × 2) trains in full for every method
  training {DEFAULTS['epochs']} epochs ({math.ceil(DEFAULTS['train_examples'] / DEFAULTS['batch_size']) * DEFAULTS['epochs']} steps), batch {DEFAULTS['batch_size']} (sentences of similar length batched together), at
           most {DEFAULTS['max_length']} tokens, AdamW at lr {DEFAULTS['lr']:g} for every row (a short run wants a larger
           step than the methods' defaults of 1e-3) with 6% linear warm-up then linear decay, gradient
           clipping at 1.0; the epoch with the best validation accuracy is kept; the test split is
           evaluated once, on the adapter loaded back from its file
  rows     LoRA r=8 (B̂_0 Â_km), B-only r=8 and r=16 (B̂_0 A_rand: A frozen random orthogonal, stored as
           its seed), A-only r=8 (B_rand Â_0)

One seed and a short run: the numbers show the mechanics and the orders of magnitude; the paper's
comparison needs several seeds, a learning-rate sweep and full training:
  asymlora grid --preset table1 --sweep        then        asymlora report runs/grid

Finished runs are kept under --out and re-used by the next 'asymlora demo' (--fresh retrains).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="train LoRA r=8, B-only r=8/16 and A-only r=8 on movie-review sentiment "
                             "(5–10 min on 2 CPU cores)",
        description="Asymmetry in low-rank adapters, in a few minutes: train LoRA r=8, B-only r=8, B-only r=16 "
                    "and A-only r=8 on a real task with a real pretrained model, and compare accuracy, trainable "
                    "parameters, adapter file size and time.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="where the run folders go (default runs/demo)")
    p.add_argument("--task", default=DEFAULTS["task"], help="task name or data file (default sentiment)")
    p.add_argument("--model", default=DEFAULTS["model"], help="model name or folder (default minilm)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed (default 0)")
    p.add_argument("--train-examples", type=int, default=DEFAULTS["train_examples"],
                   help=f"training subset size (default {DEFAULTS['train_examples']}; 0 = the whole training split)")
    p.add_argument("--val-examples", type=int, default=DEFAULTS["val_examples"],
                   help=f"validation subset size (default {DEFAULTS['val_examples']}; 0 = the whole split)")
    p.add_argument("--test-examples", type=int, default=0,
                   help="test subset size (default 0 = the whole test split)")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help=f"default {DEFAULTS['epochs']}")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help=f"default {DEFAULTS['batch_size']}")
    p.add_argument("--max-length", type=int, default=DEFAULTS["max_length"], help=f"default {DEFAULTS['max_length']}")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"],
                   help=f"learning rate of every row (default {DEFAULTS['lr']:g}; 0 = each method's default)")
    p.add_argument("--fresh", action="store_true", help="delete the demo's earlier runs under --out and retrain")
    add_threads_option(p, default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    quiet_libraries()
    if not apply_threads(args.threads, "demo"):
        return 2
    started = time.monotonic()
    out = Path(args.out)
    settings = dict(task=args.task, model=args.model, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                    max_length=args.max_length, max_train_examples=args.train_examples or None,
                    max_val_examples=args.val_examples or None, max_test_examples=args.test_examples or None,
                    extra_tests=False)
    if args.lr:
        settings["lrs"] = (args.lr,)
    try:
        specs = [RunSpec(method=m, rank=r, **settings) for m, r in DEMO_METHODS]
    except (TypeError, ValueError) as err:
        print(f"asymlora demo: {err}", file=sys.stderr)
        return 2
    if args.fresh:
        for spec in specs:
            shutil.rmtree(out / spec.relpath(), ignore_errors=True)
    print(f"asymlora demo: {', '.join(s.display for s in specs)}\n"
          f"  task {args.task}, model {args.model}, seed {args.seed}, "
          f"{args.train_examples or 'all'} training sentences × {args.epochs} epochs, batch {args.batch_size}, "
          f"≤ {args.max_length} tokens, lr {args.lr or 'per method'}; validation {args.val_examples or 'all'}, "
          f"test {args.test_examples or 'all'}\n  runs under {out}/ (see asymlora demo --help)\n", flush=True)
    results = []
    loader = Loader()
    for i, spec in enumerate(specs, start=1):
        print(f"[{i}/{len(specs)}] {spec.display}", flush=True)
        t0 = time.monotonic()
        cached = (out / spec.relpath() / "result.json").is_file()
        try:
            r = run(spec, out, loader=loader, progress=not args.quiet, echo=None)
        except RunConflict as err:
            print(f"asymlora demo: {err}\n  (or pass --fresh)", file=sys.stderr)
            return 2
        except (ValueError, RuntimeError, OSError) as err:
            print(f"asymlora demo: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
        r["_wall"] = time.monotonic() - t0
        r["_cached"] = cached
        results.append(r)
        m = r["primary_metric"]
        print(f"      test {m} {r['test'].get(m, float('nan')):.4f}" + (" (earlier run, re-used)" if cached else ""),
              flush=True)
    print()
    print(table(results))
    print()
    print(notes(results, out))
    print(f"\ntotal wall time {time.monotonic() - started:.0f} s")
    return 0


def table(results: list[dict]) -> str:
    m = results[0]["primary_metric"]
    extra = sorted(k for k in results[0]["test"] if k != m)
    head = ["method", "paper", "r", f"val {m}", f"test {m}", *[f"test {k}" for k in extra], "trainable params",
            "adapter bytes", "train s", "total s"]
    rows = []
    for r in results:
        label = {"lora": "LoRA", "b-only": "B-only", "a-only": "A-only"}.get(r["method"], r["method"])
        rows.append([label, r["notation"], str(r["rank"]), f"{r['val'].get(m, float('nan')):.4f}",
                     f"{r['test'].get(m, float('nan')):.4f}", *[f"{r['test'][k]:.4f}" for k in extra],
                     f"{r['trainable_params']:,}", f"{r['adapter_bytes']:,}", f"{r['train_seconds']:.0f}",
                     f"{r['_wall']:.0f}" + ("*" if r["_cached"] else "")])
    widths = [max(display_width(h), *(display_width(row[i]) for row in rows)) for i, h in enumerate(head)]
    right = set(range(2, len(head)))

    def line(cells: list[str]) -> str:
        return "  ".join(pad(c, w, right=i in right) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def notes(results: list[dict], out: Path) -> str:
    by = {(r["method"], r["rank"]): r for r in results}
    lines = []
    lora, b8, b16 = by.get(("lora", 8)), by.get(("b-only", 8)), by.get(("b-only", 16))
    if lora and b16:
        lines.append(f"B-only r=16 trains {b16['trainable_params']:,} parameters, LoRA r=8 {lora['trainable_params']:,}: "
                     "the paper's equal-budget comparison (Table 1).")
    if lora and b8:
        lines.append(f"B-only r=8 adapter file: {b8['adapter_bytes']:,} bytes vs LoRA r=8 {lora['adapter_bytes']:,} — "
                     "the frozen A is stored as its seed and regenerated on load.")
    lines.append("trainable params include the classification head; 'train s' is training + per-epoch validation, "
                 "'total s' adds model loading and the test evaluation" +
                 ("; * = an earlier run re-used (--fresh retrains)." if any(r["_cached"] for r in results) else "."))
    lines.append(f"run folders (config, env, metrics per epoch, adapter, result.json): {out}/  —  "
                 f"aggregate with: asymlora report {out}")
    return "\n".join(lines)
