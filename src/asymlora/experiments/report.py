"""Aggregate finished runs into the paper's Table 1 layout: Markdown, CSV and plots.

Rows are methods (in the paper's order: baselines, LoRA, B-only, A-only, then the init variants of
Tables 5 and 10), each at its rank; columns are tasks; a cell is the test primary metric's mean ± std
over seeds (std with ``ddof=1``, the sample standard deviation; a cell over fewer than 3 seeds is
marked ``*``). Metrics in [−1, 1] (accuracy, F1, MCC, Pearson, Spearman) are shown ×100, as in the
paper. ``Avg.`` is the mean over tasks of the cell means, for rows that have every task (tasks whose
primary metric is lower-is-better, e.g. MSE, are left out of the average). "# Trainable" counts every
parameter that trains, the head included; the percentage is of the base model's parameters.

Also written: the chosen learning rates per cell; the extra test sets (out-of-domain sets, environments);
per task, train / validation / test of the primary metric and the **train − test gap** on the test split and
each extra set (the paper's Table 13; the train figure is the selected adapter on its training examples with
dropout off); the task's detail metrics (ROUGE-1/2/L, MMLU categories, … as the task names them); cost
(adapter file bytes, training time); ``report.png`` (bars with std, axis from zero) and ``curves.png``
(validation metric and train loss per epoch of the chosen learning rate, mean over seeds: whether the
ranking is just "which converged first").
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from asymlora.atomic import atomic_write_bytes
from asymlora.experiments.methods import ORDER, get_method
from asymlora.experiments.spec import with_added_settings, with_head
from asymlora.tasks.protocol import is_percent

TASK_ORDER = ("sentiment", "sentiment-score", "trec", "trec-fine", "sms-spam", "sarcasm")
MIN_SEEDS = 3


class ReportError(ValueError):
    """No results to report, or results that cannot be read."""


def collect(results_dir: str | Path | Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every finished run (``result.json``) under ``results_dir`` (one folder or several, e.g. grids run
    in different sessions), with its folder and curve attached. A run found twice is an error of the report."""
    roots = [Path(results_dir)] if isinstance(results_dir, (str, Path)) else [Path(d) for d in results_dir]
    if not roots:
        raise ReportError("no results folder given")
    for root in roots:
        if not root.is_dir():
            raise ReportError(f"{root} is not a folder of results")
    out = []
    for f in (f for root in roots for f in sorted(root.rglob("result.json"))):
        if "trials" in f.parts:
            continue
        try:
            r = json.loads(f.read_text())
        except json.JSONDecodeError as err:
            raise ReportError(f"{f} is corrupt ({err}); delete that run folder and re-run it") from None
        if not isinstance(r, dict) or "test" not in r or "method" not in r:
            continue
        r["_dir"] = str(f.parent)
        curve = f.parent / "metrics.jsonl"
        r["_curve"] = [json.loads(x) for x in curve.read_text().splitlines() if x.strip()] if curve.is_file() else []
        out.append(r)
    if not out:
        raise ReportError(f"no finished runs (result.json) under {', '.join(map(str, roots))}")
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else math.nan)


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    params: list[int] = field(default_factory=list)
    base_params: list[int] = field(default_factory=list)
    adapter_bytes: list[int] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    train: list[float] = field(default_factory=list)  # the primary metric on the training examples
    val: list[float] = field(default_factory=list)
    gap: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # train − test, per test set
    detail: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # the task's report metrics
    curves: list[list[dict[str, Any]]] = field(default_factory=list)
    metric: str = ""
    settings: dict[str, Any] | None = None  # the run settings shared by the cell's seeds
    first_dir: str = ""
    candidates: list[tuple[float, ...]] = field(default_factory=list)  # each run's lr sweep
    tuned_on_seed: int | None = None  # grid --tune-on-first-seed: the seed whose sweep chose the lr

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return mean_std(self.values)[0]

    @property
    def std(self) -> float:
        return mean_std(self.values)[1]


@dataclass
class Table:
    model: str
    rows: list[tuple[str, int | None]]  # (method, rank)
    tasks: list[str]
    cells: dict[tuple[tuple[str, int | None], str], Cell]
    metrics: dict[str, str]  # task -> primary metric

    def cell(self, row, task) -> Cell | None:
        return self.cells.get((row, task))

    def average(self, row) -> float:
        tasks = [t for t in self.tasks if is_percent(self.metrics[t])]
        means = [self.cells[(row, t)].mean for t in tasks if (row, t) in self.cells]
        if not tasks or len(means) != len(tasks) or any(math.isnan(m) for m in means):
            return math.nan
        return statistics.fmean(scale(m, "accuracy") for m in means)


def scale(v: float, metric: str) -> float:
    return 100.0 * v if is_percent(metric) else v


def model_name(result: dict[str, Any]) -> str:
    """The model a result belongs to, with ``+mean-pool`` when it used the mean-pooling head."""
    return with_head(str(result.get("model", "?")), result.get("pooling"))


def build_tables(results: Iterable[dict[str, Any]]) -> list[Table]:
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_model[model_name(r)].append(r)
    tables = []
    for model, rs in by_model.items():
        cells: dict[tuple, Cell] = {}
        metrics: dict[str, str] = {}
        for r in rs:
            task = r.get("task_label") or r["task"]
            row = (r["method"], r.get("rank"))
            metric = r["primary_metric"]
            if metrics.setdefault(task, metric) != metric:
                raise ReportError(f"task {task!r} has runs scored by {metrics[task]!r} and by {metric!r}")
            c = cells.setdefault((row, task), Cell(metric=metric))
            settings = _settings(r)
            if c.settings is None:
                c.settings, c.first_dir = settings, r["_dir"]
            elif settings is not None and settings != c.settings:
                diff = sorted(k for k in set(settings) | set(c.settings) if settings.get(k) != c.settings.get(k))
                raise ReportError(f"{r['display']} on {task} has runs with different settings ({', '.join(diff)}): "
                                  f"{c.first_dir} and {r['_dir']}; report one configuration per results folder")
            if r["seed"] in c.seeds:
                raise ReportError(f"two results for {r['display']} on {task}, seed {r['seed']} (model {model}): "
                                  f"{r['_dir']}; report one results folder per configuration, and give each run to the report once")
            c.values.append(float(r["test"].get(metric, math.nan)))
            c.seeds.append(r["seed"])
            c.lrs.append(r["lr"])
            c.candidates.append(tuple(float(v) for v in (r.get("lr_candidates") or [r["lr"]])))
            c.params.append(int(r["trainable_params"]))
            c.base_params.append(int(r.get("total_params") or 0))
            c.adapter_bytes.append(int(r.get("adapter_bytes") or 0))
            c.train_seconds.append(float(r.get("train_seconds") or 0.0))
            for name, m in (r.get("test_extra") or {}).items():
                c.extra[name].append(float(m.get(metric, math.nan)))
            if r.get("train"):  # runs written before train metrics were recorded have none
                c.train.append(float(r["train"].get(metric, math.nan)))
                for name, g in (r.get("gap") or {}).items():
                    c.gap[name].append(float(g))
            c.val.append(float((r.get("val") or {}).get(metric, math.nan)))
            for name in r.get("report_metrics") or ():
                c.detail[name].append(float(r["test"].get(name, math.nan)))
            c.curves.append(r.get("_curve") or [])
        for (row, task), c in cells.items():
            _check_lr_protocol(c, row_label(row), task)
        rows = sorted({row for row, _ in cells}, key=_row_key)
        tasks = sorted({t for _, t in cells}, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else 99, t))
        tables.append(Table(model, rows, tasks, cells, metrics))
    return tables


# Settings that may differ between the seeds of one cell (the lr candidates are checked on their own).
PER_RUN = frozenset({"seed", "checkpoint_every", "eval_batch_size", "lrs", "sweep"})


def _check_lr_protocol(c: Cell, label: str, task: str) -> None:
    """The seeds of a cell either swept the same learning rates each, or (``grid --tune-on-first-seed``)
    the first seed swept them and every other seed trained once at the rate that sweep chose."""
    if len(set(c.candidates)) <= 1:
        return
    first = c.seeds.index(min(c.seeds))
    chosen = c.lrs[first]
    if len(c.candidates[first]) > 1 and all(
            i == first or c.candidates[i] == (chosen,) for i in range(len(c.seeds))):
        c.tuned_on_seed = c.seeds[first]
        return
    sweeps = sorted({", ".join(f"{v:g}" for v in cand) for cand in c.candidates})
    raise ReportError(f"{label} on {task} has runs with different settings (lrs: {' / '.join(sweeps)}) that are "
                      "not one sweep on the first seed reused by the others; report one configuration per "
                      "results folder")


def _settings(r: dict[str, Any]) -> dict[str, Any] | None:
    spec = r.get("spec")
    return {k: v for k, v in with_added_settings(spec).items() if k not in PER_RUN} if isinstance(spec, dict) else None


def _row_key(row: tuple[str, int | None]) -> tuple:
    method, rank = row
    return (ORDER.index(method) if method in ORDER else 99, method, rank or 0)


def row_label(row: tuple[str, int | None]) -> str:
    method, rank = row
    try:
        return get_method(method).display(rank)
    except ValueError:
        return f"{method} (r={rank})" if rank else method


def fmt(mean: float, std: float, metric: str, n: int) -> str:
    if math.isnan(mean):
        return "—"
    m = scale(mean, metric)
    star = "*" if n < MIN_SEEDS else ""
    if math.isnan(std):
        return f"{m:.1f}{star}" if is_percent(metric) else f"{m:.3f}{star}"
    s = scale(std, metric)
    return (f"{m:.1f} ± {s:.1f}{star}" if is_percent(metric) else f"{m:.3f} ± {s:.3f}{star}")


def fmt_gap(values: Sequence[float], metric: str) -> str:
    """A train − test gap: mean ± std with its sign (×100 for metrics in [−1, 1])."""
    m, s = mean_std(values)
    if math.isnan(m):
        return "—"
    digits = 1 if is_percent(metric) else 3
    text = f"{scale(m, metric):+.{digits}f}"
    return text + (f" ± {scale(s, metric):.{digits}f}" if not math.isnan(s) else "") + ("*" if len(values) < MIN_SEEDS else "")


def gap_tables(table: Table) -> list[str]:
    """Per task: train, validation and test of the primary metric and the train − test gaps (Table 13)."""
    lines: list[str] = []
    for task in table.tasks:
        cells = [(row, c) for row in table.rows if (c := table.cell(row, task)) is not None]
        if not any(not math.isnan(x) for _, c in cells for x in c.train):
            continue  # no run has it, or the task scores train by another metric (ROUGE / MMLU tasks: loss only)
        metric = table.metrics[task]
        sets = ["test"] + sorted({n for _, c in cells for n in c.gap if n != "test"})
        lines += ["", f"Train, validation and test {metric} on {task}, and the train − test gap (the train figure: the "
                      "selected adapter on its training examples, dropout off):", "",
                  "| Method | Train | Val | Test | " + " | ".join(f"Gap ({n})" for n in sets) + " |",
                  "|---|---:|---:|---:|" + "---:|" * len(sets)]
        for row, c in cells:
            tr, va = mean_std(c.train), mean_std(c.val)
            lines.append("| " + " | ".join([row_label(row), fmt(*tr, metric, len(c.train)), fmt(*va, metric, len(c.val)),
                                             fmt(c.mean, c.std, metric, c.n),
                                             *[fmt_gap(c.gap.get(n, []), metric) for n in sets]]) + " |")
    return lines


def detail_tables(table: Table) -> list[str]:
    """Per task with detail metrics (e.g. ROUGE-1/2/L, MMLU categories): their test mean ± std."""
    lines: list[str] = []
    for task in table.tasks:
        cells = [(row, c) for row in table.rows if (c := table.cell(row, task)) is not None]
        names = list(dict.fromkeys(n for _, c in cells for n in c.detail))
        if not names:
            continue
        lines += ["", f"Test metrics of {task} (mean ± std over seeds):", "",
                  "| Method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for row, c in cells:
            vals = [c.detail.get(n, []) for n in names]
            lines.append("| " + " | ".join([row_label(row)] + [fmt(*mean_std(v), n, len(v)) if v else "—"
                                                                for n, v in zip(names, vals)]) + " |")
    return lines


def params_text(table: Table, row) -> str:
    ps = sorted({p for t in table.tasks if (c := table.cell(row, t)) for p in c.params})
    bases = [b for t in table.tasks if (c := table.cell(row, t)) for b in c.base_params if b]
    if not ps:
        return "—"
    text = f"{ps[0]:,}" if len(ps) == 1 else f"{ps[0]:,}–{ps[-1]:,}"
    if bases:
        text += f" ({share_text(ps[0] / bases[0])})"
    return text


def share_text(share: float) -> str:
    """A share of the base model as a percentage with two decimals, or two significant digits below 0.01 %."""
    pct = 100.0 * share
    return f"{pct:.2f}%" if pct >= 0.01 or pct == 0 else f"{pct:.2g}%"


def _lr_text(lrs: Sequence[float]) -> str:
    counts: dict[float, int] = defaultdict(int)
    for lr in lrs:
        counts[lr] += 1
    return ", ".join(f"{lr:g}" + (f" ×{k}" if k > 1 else "") for lr, k in sorted(counts.items()))


def _lr_cell_text(c: Cell) -> str:
    if c.tuned_on_seed is None:
        return _lr_text(c.lrs)
    swept = c.candidates[c.seeds.index(c.tuned_on_seed)]
    return f"{c.lrs[0]:g} † [{', '.join(f'{v:g}' for v in swept)}]"


def markdown(table: Table) -> str:
    metric_names = ", ".join(f"{t}: {table.metrics[t]}" for t in table.tasks)
    head = ["Method", "# Trainable", *table.tasks, "Avg."]
    lines = [f"### Test results — model `{table.model}`", "",
             f"Mean ± std over seeds of the test primary metric ({metric_names}); ×100 except MSE. "
             f"`*`: fewer than {MIN_SEEDS} seeds.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in table.rows:
        cells = []
        for t in table.tasks:
            c = table.cell(row, t)
            cells.append(fmt(c.mean, c.std, c.metric, c.n) if c else "—")
        avg = table.average(row)
        lines.append("| " + " | ".join([row_label(row), params_text(table, row), *cells,
                                         "—" if math.isnan(avg) else f"{avg:.1f}"]) + " |")
    lines += ["", "Learning rate chosen on the validation split (per seed):", "",
              "| Method | " + " | ".join(table.tasks) + " |", "|---|" + "---|" * len(table.tasks)]
    for row in table.rows:
        lines.append("| " + " | ".join([row_label(row)] + [_lr_cell_text(c) if (c := table.cell(row, t)) else "—"
                                                            for t in table.tasks]) + " |")
    if any(c.tuned_on_seed is not None for c in table.cells.values()):
        lines += ["", "† swept on the first seed only (candidates in brackets); the other seeds trained once "
                      "at the rate it chose (`asymlora grid --tune-on-first-seed`)."]
    extra_cols = sorted({(t, name) for (row, t), c in table.cells.items() for name in c.extra})
    if extra_cols:
        lines += ["", "Out-of-domain test sets (same model, evaluated once with the test split):", "",
                  "| Method | " + " | ".join(f"{t} → {n}" for t, n in extra_cols) + " |",
                  "|---|" + "---:|" * len(extra_cols)]
        for row in table.rows:
            cells = []
            for t, n in extra_cols:
                c = table.cell(row, t)
                vals = c.extra.get(n, []) if c else []
                m, s = mean_std(vals)
                cells.append(fmt(m, s, c.metric, len(vals)) if c and vals else "—")
            lines.append("| " + " | ".join([row_label(row), *cells]) + " |")
    lines += detail_tables(table)
    lines += gap_tables(table)
    lines += ["", "Cost (median over tasks and seeds):", "", "| Method | adapter file bytes | train s / run |",
              "|---|---:|---:|"]
    for row in table.rows:
        cs = [c for t in table.tasks if (c := table.cell(row, t))]
        b = statistics.median([x for c in cs for x in c.adapter_bytes]) if cs else math.nan
        s = statistics.median([x for c in cs for x in c.train_seconds]) if cs else math.nan
        lines.append(f"| {row_label(row)} | {b:,.0f} | {s:.1f} |")
    return "\n".join(lines) + "\n"


def wide_csv(tables: Sequence[Table]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    tasks = sorted({t for tb in tables for t in tb.tasks}, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else 99, t))
    w.writerow(["model", "method", "rank", "display", "notation", "trainable_params",
                *[f"{t}_{k}" for t in tasks for k in ("mean", "std", "n", "metric")], "avg"])
    for tb in tables:
        for row in tb.rows:
            method, rank = row
            ps = sorted({p for t in tb.tasks if (c := tb.cell(row, t)) for p in c.params})
            vals = []
            for t in tasks:
                c = tb.cell(row, t)
                vals += ([_num(c.mean), _num(c.std), c.n, c.metric] if c else ["", "", 0, tb.metrics.get(t, "")])
            w.writerow([tb.model, method, rank if rank else "", row_label(row), _notation(method),
                        ps[0] if len(ps) == 1 else "/".join(map(str, ps)), *vals, _num(tb.average(row) / 100.0)])
    return buf.getvalue()


def runs_csv(results: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "task", "method", "rank", "seed", "lr", "metric", "train", "val", "test", "gap",
                "trainable_params", "adapter_bytes", "train_seconds", "selected_epoch", "epochs", "run_dir"])
    for r in sorted(results, key=lambda r: (model_name(r), r["task"], _row_key((r["method"], r.get("rank"))), r["seed"])):
        m = r["primary_metric"]
        w.writerow([model_name(r), r.get("task_label") or r["task"], r["method"], r.get("rank") or "", r["seed"],
                    r["lr"], m, _num((r.get("train") or {}).get(m)), _num(r["val"].get(m)), _num(r["test"].get(m)),
                    _num((r.get("gap") or {}).get("test")), r["trainable_params"],
                    r.get("adapter_bytes"), r.get("train_seconds"), r.get("selected_epoch"), r.get("epochs"),
                    r["_dir"]])
    return buf.getvalue()


def _num(v: Any) -> str:
    if v is None:
        return ""
    v = float(v)
    return "" if math.isnan(v) else f"{v:.6g}"


def _notation(method: str) -> str:
    try:
        return get_method(method).notation
    except ValueError:
        return method


def plot(tables: Sequence[Table], bars_path: Path, curves_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for table in tables[:1]:  # one figure per report (the first model) keeps the files simple
        n = len(table.tasks)
        fig, axes = plt.subplots(1, n, figsize=(max(4.0, 3.2 * n), 0.35 * len(table.rows) + 2.2), squeeze=False)
        for ax, task in zip(axes[0], table.tasks):
            labels, means, stds = [], [], []
            for row in table.rows:
                c = table.cell(row, task)
                if c is None:
                    continue
                labels.append(row_label(row))
                means.append(scale(c.mean, c.metric))
                stds.append(0.0 if math.isnan(c.std) else scale(c.std, c.metric))
            y = range(len(labels))
            ax.barh(list(y), means, xerr=stds, color="tab:blue", alpha=0.8, capsize=3)
            ax.set_yticks(list(y), labels, fontsize=8)
            ax.invert_yaxis()
            finite = [m for m in means if not math.isnan(m)]
            if finite and is_percent(table.metrics[task]):
                ax.set_xlim(0.0, min(100.0, max(m + s for m, s in zip(means, stds) if not math.isnan(m)) + 5.0))
            ax.set_title(f"{task} ({table.metrics[task]})", fontsize=9)
            if ax is not axes[0][0]:
                ax.set_yticklabels([])
        fig.suptitle(f"test metric, mean ± std over seeds — {table.model}", fontsize=10)
        fig.tight_layout()
        fig.savefig(bars_path, dpi=120)
        plt.close(fig)

        from matplotlib.ticker import MaxNLocator

        width = max(7.0, 3.6 * n)
        fig, axes = plt.subplots(2, n, figsize=(width, 6.5), squeeze=False)
        styles = row_styles(table)  # one style per method in every panel, whichever tasks it ran on
        legend: dict[str, Any] = {}
        for j, task in enumerate(table.tasks):
            for row in table.rows:
                c = table.cell(row, task)
                if c is None or not any(c.curves):
                    continue
                for i, key in enumerate(("val_primary", "train_loss")):
                    series = _mean_curve(c.curves, key)
                    if series:
                        ax = axes[i][j]
                        color, dash = styles[row]
                        (line,) = ax.plot(range(1, len(series) + 1), series, marker="o", ms=3,
                                          color=color, linestyle=dash, label=row_label(row))
                        legend.setdefault(row_label(row), line)
            for ax in (axes[0][j], axes[1][j]):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes[0][j].set_title(f"{task}: validation {table.metrics[task]}", fontsize=9)
            axes[1][j].set_title(f"{task}: train loss", fontsize=9)
            axes[1][j].set_xlabel("epoch")
        labels = [row_label(row) for row in table.rows if row_label(row) in legend]
        handles = [legend[label] for label in labels]
        if handles:
            ncol = max(1, min(len(labels), int(width // 2.3)))
            rows = -(-len(labels) // ncol)
            fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8)
        else:
            rows = 0
        fig.tight_layout(rect=(0, min(0.4, 0.035 * rows + 0.02), 1, 1))
        fig.savefig(curves_path, dpi=120)
        plt.close(fig)


LINE_STYLES = ("-", "--", ":", "-.")


def row_styles(table: Table) -> dict[tuple[str, int | None], tuple[str, str]]:
    """A fixed (colour, line style) per row (method, rank), the same in every panel and distinct for up
    to 40 rows: the 10 colours of matplotlib's cycle, then again with dashed, dotted, dash-dot lines."""
    return {row: (f"C{k % 10}", LINE_STYLES[(k // 10) % len(LINE_STYLES)]) for k, row in enumerate(table.rows)}


def _mean_curve(curves: Sequence[list[dict[str, Any]]], key: str) -> list[float]:
    length = min((len(c) for c in curves if c), default=0)
    out = []
    for e in range(length):
        vals = [float(c[e].get(key, math.nan)) for c in curves if c]
        out.append(statistics.fmean(v for v in vals if not math.isnan(v)) if any(not math.isnan(v) for v in vals)
                   else math.nan)
    return out


def write_report(results_dir: str | Path | Sequence[str | Path], out_dir: str | Path | None = None, *,
                 plots: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``table1.csv``, ``runs.csv`` (and the plots) to ``out_dir``
    (default ``RESULTS_DIR/report``, the first folder's when several are given); returns the paths."""
    dirs = [results_dir] if isinstance(results_dir, (str, Path)) else list(results_dir)
    results = collect(dirs)
    tables = build_tables(results)
    out = Path(out_dir) if out_dir is not None else Path(dirs[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    where = ", ".join(f"`{d}`" for d in dirs)
    md = "# asymlora report\n\n" + f"{len(results)} finished runs under {where}.\n\n" + "\n".join(
        markdown(t) for t in tables)
    paths = {"markdown": out / "report.md", "csv": out / "table1.csv", "runs_csv": out / "runs.csv"}
    if plots:
        paths.update(bars=out / "report.png", curves=out / "curves.png")
        plot(tables, paths["bars"], paths["curves"])
        md += "\n![test metric per method](report.png)\n\n![curves](curves.png)\n"
    atomic_write_bytes(paths["markdown"], md.encode())
    atomic_write_bytes(paths["csv"], wide_csv(tables).encode())
    atomic_write_bytes(paths["runs_csv"], runs_csv(results).encode())
    return paths
