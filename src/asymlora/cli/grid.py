"""``asymlora grid``: tasks × methods × ranks × seeds, skipping finished runs, then the report."""

from __future__ import annotations

import argparse
import sys

from asymlora.cli.options import add_spec_options, apply_threads, print_methods, quiet_libraries, spec_settings
from asymlora.experiments.grid import DEFAULT_SEEDS, DEFAULT_TASKS, GRID_PRESETS, Grid, GridError, run_grid, status
from asymlora.experiments.loader import Loader
from asymlora.experiments.methods import MethodError
from asymlora.experiments.report import ReportError, write_report
from asymlora.experiments.spec import RunConflict

EPILOG = """\
examples:
  asymlora grid --preset table1 --sweep                    # the paper's Table 1 on the 5 built-in tasks, 3 seeds
  asymlora grid --tasks sentiment trec --methods lora b-only:16 a-only --ranks 8 --seeds 0 1 2
  asymlora grid --tasks trec --methods lora b-only --lr 3e-3 1e-2 --tune-on-first-seed   # sweep on seed 0 only
  asymlora grid --config grid.toml --dry-run               # list the runs and their status
  asymlora grid --config grid.toml --keep-going            # go on past a failed run; exit 1 at the end

Presets: table1 (Full FT, LP, LoRA r=8, PEFT LoRA r=8, B-only r=8/16, A-only r=8/16), table10
(every frozen-factor init at r=8/16 and the trained-both inits), table5, demo.
A grid file (.toml or .json) holds tasks, methods, ranks, seeds, preset and any run setting
(epochs, sweep, lrs, model, max_length, ...); flags override it.

Cost on 2 CPU cores with MiniLM: about 1 s per step at batch 32 (sentences batched by length);
one epoch of the sentiment task (7,651 sentences) is ~240 steps. The full Table-1 grid with a sweep is
5 tasks × 8 methods × 3 seeds × 3 learning rates: days on a CPU, an hour or two on one GPU.
Keep it out of CI. Interrupt it at any time: re-running the command resumes.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "grid", help="run a grid of tasks × methods × ranks × seeds (skips finished runs) and report it",
        description="Run every combination of tasks, methods (with ranks) and seeds that is not finished yet "
                    "(finished: its result.json exists; an interrupted run resumes from its checkpoint), then "
                    "write the report (Table-1 layout) to OUT/report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="a grid file (.toml or .json); flags override its values")
    p.add_argument("--preset", choices=sorted(GRID_PRESETS), help="a named set of methods (default table1)")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help=f"default: {' '.join(DEFAULT_TASKS)}")
    p.add_argument("--methods", nargs="+", metavar="METHOD[:RANK]",
                   help="methods, optionally with a rank (b-only:16); default: the preset's")
    p.add_argument("--ranks", nargs="+", type=int, metavar="R", help="ranks for methods given without one (default 8)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="S", help=f"default: {' '.join(map(str, DEFAULT_SEEDS))}")
    p.add_argument("--tune-on-first-seed", action="store_true", default=None,
                   help="with several learning rates: sweep them on the first seed only; the other seeds train "
                        "once at the rate it chose on validation (k + n - 1 runs per cell, not k x n)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether each is done, partial or to do")
    p.add_argument("--keep-going", action="store_true", help="continue past a failed run (exit status 1 at the end)")
    p.add_argument("--no-report", action="store_true", help="do not write OUT/report at the end")
    add_spec_options(p, default_out="runs/grid")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.list_methods:
        print_methods()
        return 0
    quiet_libraries()
    flags = dict(tasks=args.tasks, methods=args.methods, ranks=args.ranks, seeds=args.seeds, preset=args.preset,
                 tune_on_first_seed=args.tune_on_first_seed)
    flags = {k: v for k, v in flags.items() if v is not None}
    try:
        settings = spec_settings(args)
        if args.config:
            grid = Grid.from_file(args.config, **flags, **settings)
        else:
            grid = Grid.build(**flags, **settings)
    except (GridError, MethodError, TypeError, ValueError) as err:
        print(f"asymlora grid: {err}", file=sys.stderr)
        return 2
    out = args.out or "runs/grid"
    specs = grid.specs()
    if not args.dry_run and not apply_threads(args.threads, "grid"):
        return 2
    loader = Loader()
    if args.dry_run:
        counts: dict[str, int] = {}
        for spec in specs:
            concrete = grid.resolve(spec, out, loader)
            st = "waiting" if concrete is None else status(concrete, out)
            counts[st] = counts.get(st, 0) + 1
            lrs = (f"chosen on seed {grid.seeds[0]}" if concrete is None
                   else ", ".join(f"{x:g}" for x in concrete.resolved_lrs()))
            print(f"{st:<8} {spec.relpath()}  (lr {lrs}, {spec.epochs} epochs)")
        print(f"{len(specs)} runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        return 0
    print(f"asymlora grid: {len(specs)} runs ({len(grid.tasks)} tasks × {len(grid.methods)} methods × "
          f"{len(grid.seeds)} seeds) under {out}")
    try:
        outcome = run_grid(grid, out, keep_going=args.keep_going, progress=not args.quiet, loader=loader)
    except RunConflict as err:
        print(f"asymlora grid: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nasymlora grid: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"asymlora grid: {len(outcome.done)} run, {len(outcome.skipped)} already done, "
          + (f"{len(outcome.busy)} being run by other processes, " if outcome.busy else "")
          + f"{len(outcome.failed)} failed, in {outcome.seconds:.0f} s")
    for name, msg in outcome.failed:
        print(f"  FAILED {name}: {msg}", file=sys.stderr)
    if not args.no_report and outcome.busy:
        print(f"asymlora grid: no report yet: {len(outcome.busy)} run(s) are still in progress in other processes; "
              f"the last process to finish writes it (or run: asymlora report {out})", file=sys.stderr)
    elif not args.no_report and (outcome.done or outcome.skipped):
        try:
            paths = write_report(out)
            print(f"report: {paths['markdown']}")
        except ReportError as err:
            print(f"asymlora grid: no report: {err}", file=sys.stderr)
    return 1 if outcome.failed else 0
