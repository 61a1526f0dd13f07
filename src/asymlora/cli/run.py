"""``asymlora run``: one task × method × rank × seed (over one learning rate or a sweep)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from accelerate import PartialState

from asymlora.cli.options import add_spec_options, apply_threads, print_methods, quiet_libraries, spec_settings
from asymlora.data.registry import list_tasks
from asymlora.experiments.methods import METHODS
from asymlora.experiments.run import run
from asymlora.experiments.spec import RunConflict, RunSpec
from asymlora.train.rundir import RunBusy
from asymlora.train.tracking import check_trackers

EPILOG = """\
examples:
  asymlora run --task sentiment --method b-only --rank 16 --seed 0
  asymlora run --task trec --method lora --rank 8 --sweep            # lr chosen on validation
  asymlora run --task my.csv --text-column review --label-column stars --method b-only
  asymlora run --list-methods
  torchrun --nproc_per_node 2 -m asymlora run --task sentiment --method b-only   # DDP, CPU or GPU
  accelerate launch --multi_gpu --num_processes 2 -m asymlora run ...            # the same (see docs/DISTRIBUTED.md)

The run folder is OUT/<task>/<model>/<method>-r<rank>/seed<seed>/ (config.json, env.json,
metrics.jsonl, adapter/, result.json). Re-running the same command resumes a killed run from its
last checkpoint, or prints the finished result. See docs/EXPERIMENTS.md.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="train one task × method × rank × seed and evaluate it",
        description="Train one adapter (or baseline) on one task with one seed: over the method's default "
                    "learning rate, the given one(s), or --sweep. Every learning rate trains on the train split "
                    "and is scored on validation; the best is chosen there, and the test split is evaluated once, "
                    "on the chosen adapter loaded back from disk.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default=None, help=f"built-in task ({', '.join(list_tasks())}; default sentiment), "
                   "glue/<name> (online), or a .csv/.tsv/.jsonl file")
    p.add_argument("--method", default=None, metavar="METHOD",
                   help=f"one of: {', '.join(METHODS)} (default b-only)")
    p.add_argument("--rank", type=int, default=None, help="adapter rank r (default 8; alpha = 2r)")
    p.add_argument("--seed", type=int, default=None, help="seed of the head, the frozen factor and the data order (default 0)")
    add_spec_options(p, default_out="runs")
    p.add_argument("--fsdp", action="store_true",
                   help="shard the model with FSDP2 instead of DDP (under torchrun / accelerate launch --multi_gpu, "
                        "≥ 2 processes; models with Hugging Face blocks; mixed precision no; see docs/DISTRIBUTED.md)")
    p.add_argument("--report-to", nargs="+", metavar="TRACKER", default=(),
                   help="log training loss, learning rate and validation metrics to Accelerate trackers: tensorboard, "
                        "wandb, mlflow, ... or all (installed ones); files under RUN/logs/ (default: none; "
                        "pip install 'asymlora[tracking]' for TensorBoard)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.list_methods:
        print_methods()
        return 0
    quiet_libraries()
    if not apply_threads(args.threads, "run"):
        return 2
    try:
        settings = spec_settings(args)
        for key in ("task", "method", "rank", "seed"):
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
        spec = RunSpec(**settings)
        check_trackers(args.report_to)
    except (TypeError, ValueError) as err:
        print(f"asymlora run: {err}", file=sys.stderr)
        return 2
    out = args.out or "runs"
    try:
        result = run(spec, out, progress=not args.quiet, fsdp=args.fsdp, report_to=args.report_to)
    except (RunConflict, RunBusy) as err:
        print(f"asymlora run: {err}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as err:
        print(f"asymlora run: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if PartialState().is_main_process:  # under torchrun / accelerate launch, the main process prints
        print_result(result, out, spec)
    return 0


def print_result(result: dict[str, Any], out, spec) -> None:
    m = result["primary_metric"]
    print()
    print(f"{result['display']} on {result['task_label']} (model {result['model']}, seed {result['seed']})")
    print(f"  learning rate   {result['lr']:g}" + (
        f"  (chosen on validation from {', '.join(f'{x:g}' for x in result['lr_candidates'])})"
        if len(result["lr_candidates"]) > 1 else ""))
    sel = result.get("selection_metric", m)
    print(f"  validation      {sel} {result['val'].get(sel, math.nan):.4f} (epoch {result['selected_epoch']}/{result['epochs']})")
    print("  test            " + ", ".join(f"{k} {v:.4f}" for k, v in result["test"].items()))
    for name, metrics in (result.get("test_extra") or {}).items():
        print(f"  test {name:<10} {m} {metrics.get(m, math.nan):.4f}")
    train = result.get("train") or {}
    shown = m if m in train else sel  # a task scored on generations (ROUGE, MMLU) scores train by its loss only
    if shown in train:
        gap = train[shown] - result["test"].get(shown, math.nan)
        print(f"  train           {shown} {train[shown]:.4f} (train − test {gap:+.4f})")
    print(f"  trainable       {result['trainable_params']:,} parameters")
    print(f"  adapter file    {result['adapter_bytes']:,} bytes ({result['adapter_file']})")
    speed = result.get("train_throughput") or {}
    print(f"  training time   {result['train_seconds']:.1f} s" + (
        f" (steps alone: {speed['examples_per_s']:.2f} examples/s" + (
            f", {speed['tokens_per_s']:.0f} tokens/s)" if speed.get("tokens_per_s") else ")") if speed else ""))
    print(f"  run folder      {Path(out) / spec.relpath()}")
