"""``asymlora report RESULTS_DIR [RESULTS_DIR ...]``: aggregate finished runs into the paper's Table-1 layout."""

from __future__ import annotations

import argparse
import sys

from asymlora.experiments.report import ReportError, write_report

EPILOG = """\
writes (to RESULTS_DIR/report unless --out is given):
  report.md    test metric mean ± std over seeds: methods as rows, tasks as columns, # trainable
               parameters, average; chosen learning rates; out-of-domain test sets; cost
  table1.csv   the same table, one row per method (mean, std, n per task)
  runs.csv     one row per run
  report.png   bars with std per task;  curves.png  validation metric and train loss per epoch

examples:
  asymlora report runs/grid
  asymlora report runs/table1 runs/table10 --out runs/combined   # grids run separately, one table
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="aggregate a results folder: Table-1 layout as Markdown, CSV and plots",
        description="Collect every finished run (result.json) under RESULTS_DIR (one folder or several) and write the test results as "
                    "mean ± std over seeds (sample std, ddof=1) in the paper's Table-1 layout.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", metavar="RESULTS_DIR", nargs="+",
                   help="a folder of runs (from asymlora run / grid / demo); several are reported together "
                        "(a run found in two of them is an error)")
    p.add_argument("--out", help="where to write the report (default: the first RESULTS_DIR/report)")
    p.add_argument("--no-plots", action="store_true", help="skip report.png and curves.png")
    p.add_argument("--quiet", action="store_true", help="do not print the Markdown report")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:

    try:
        paths = write_report(args.results_dir, args.out, plots=not args.no_plots)
    except ReportError as err:
        print(f"asymlora report: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
