"""The paper's experiments: methods, one run, learning-rate sweeps, grids and the report, for every task.

``run(RunSpec(task="sentiment", method="b-only", rank=16, seed=0), "runs")`` trains one adapter (or a
sweep of learning rates chosen on validation) and evaluates the test split once; ``run_grid`` does a
grid, skipping finished runs; ``write_report("runs")`` aggregates them. A :class:`Loader` holds what a
process has loaded (tasks, base models, encoded splits). See docs/EXPERIMENTS.md and docs/ARCHITECTURE.md.
"""

from asymlora.experiments.grid import GRID_PRESETS, Grid, GridError, run_grid
from asymlora.experiments.loader import Loader, RunData
from asymlora.experiments.methods import METHODS, Method, MethodError, get_method, method_table
from asymlora.experiments.report import ReportError, build_tables, collect, write_report
from asymlora.experiments.run import run
from asymlora.experiments.spec import RunConflict, RunSpec
from asymlora.experiments.sweep import pick_lr

__all__ = [
    "METHODS", "Method", "MethodError", "get_method", "method_table", "RunSpec", "RunConflict", "run", "pick_lr",
    "Grid", "GridError", "GRID_PRESETS", "run_grid", "collect", "build_tables", "write_report", "ReportError",
    "Loader", "RunData",
]
