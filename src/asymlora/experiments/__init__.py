"""The paper's experiments: methods, one run, learning-rate sweeps, grids and the Table-1 report.

``run(RunSpec(task="sentiment", method="b-only", rank=16, seed=0), "runs")`` trains one adapter (or a
sweep of learning rates chosen on validation) and evaluates the test split once; ``run_grid`` does a
grid, skipping finished runs; ``write_report("runs")`` aggregates them. See docs/EXPERIMENTS.md.
"""

from asymlora.experiments.grid import PRESETS as GRID_PRESETS
from asymlora.experiments.grid import Grid, GridError, run_grid
from asymlora.experiments.methods import METHODS, Method, MethodError, get_method, method_table
from asymlora.experiments.report import ReportError, build_tables, collect, write_report
from asymlora.experiments.run import RunConflict, RunSpec, run
from asymlora.experiments.sweep import pick_lr

__all__ = [
    "METHODS", "Method", "MethodError", "get_method", "method_table", "RunSpec", "RunConflict", "run", "pick_lr",
    "Grid", "GridError", "GRID_PRESETS", "run_grid", "collect", "build_tables", "write_report", "ReportError",
]
