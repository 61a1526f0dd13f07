"""Rows of measured pairs, the ratio table, and the machine / versions / commit that produced them."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import asymlora
from asymlora.atomic import atomic_write_bytes

__all__ = ["Row", "fmt_value", "format_table", "format_absolute", "machine_info", "write_json"]


@dataclass
class Row:
    """One measured pair from one run: ``subject`` against ``reference``, both absolute, and their ratio.

    ``bound`` is the largest ratio that meets the target (``None``: no target, reported for context);
    ``target`` says in words what the bound is.
    """

    section: str
    metric: str
    subject: str
    reference: str
    value: float
    ref_value: float
    unit: str
    bound: float | None = None
    target: str = ""
    lower: float | None = None  # smallest ratio that meets the target (for two-sided targets)
    note: str = ""
    check: str = "ratio"  # what bound/lower apply to: "ratio", or "value" (an absolute figure, e.g. an error)
    ratio: float = field(init=False)
    held: bool | None = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = self.value / self.ref_value if self.ref_value else (math.inf if self.value else 1.0)
        if self.bound is None and self.lower is None:
            self.held = None
        else:
            x = self.value if self.check == "value" else self.ratio
            ok = True
            if self.bound is not None:
                ok &= x <= self.bound
            if self.lower is not None:
                ok &= x >= self.lower
            self.held = bool(ok)


def _bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def fmt_value(v: float, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if unit == "B":
        return _bytes(v)
    if unit == "B/token":
        return f"{v:,.0f} B/tok"
    if unit == "s":
        return f"{v * 1e3:.1f} ms" if v < 10 else f"{v:.2f} s"
    if unit in ("rel", "abs"):
        return f"{v:.1e}"
    if unit == "count":
        return f"{v:,.0f}"
    return f"{v:g} {unit}".strip()


def _fmt_ratio(r: float) -> str:
    if math.isinf(r):
        return "inf"
    if r == 0:
        return "0"
    if r < 0.01 or r >= 1000:
        return f"{r:.2e}"
    return f"{r:.3f}" if r < 10 else f"{r:.1f}"


def format_table(rows: list[Row], header: str = "") -> str:
    """The ratio table as Markdown: one row per measured pair, absolute figures beside the ratio."""
    lines = []
    if header:
        lines += [header, ""]
    lines.append("| # | section | metric | subject | reference | subject value | reference value | ratio | target | held |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        held = "—" if r.held is None else ("yes" if r.held else "**NO**")
        metric = r.metric + (f" ({r.note})" if r.note else "")
        lines.append(f"| {i} | {r.section} | {metric} | {r.subject} | {r.reference} | {fmt_value(r.value, r.unit)} | "
                     f"{fmt_value(r.ref_value, r.unit)} | {_fmt_ratio(r.ratio)} | {r.target or '—'} | {held} |")
    return "\n".join(lines)


def format_absolute(title: str, columns: list[str], table: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    """HEAD of the asymlora source tree, with "-dirty" if the package has local changes (untracked files
    inside the package count, as in asymlora.train's run records)."""
    package = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=package,
                               capture_output=True, text=True, timeout=10)
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    versions = {"python": platform.python_version(), "asymlora": asymlora.__version__, "torch": torch.__version__}
    for name in ("transformers", "peft"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    try:
        load = os.getloadavg()
        info["load_average_1m_at_start"] = round(load[0], 2)
    except OSError:
        pass
    return {"machine": info, "versions": versions, "commit": _git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}


def machine_line(meta: dict[str, Any]) -> str:
    m, v = meta["machine"], meta["versions"]
    where = m["gpu"] if str(m["device"]).startswith("cuda") and m["gpu"] else f"{m['cpu']}, {m['logical_cpus']} logical CPUs"
    return (f"Machine: {where}; device {m['device']}, torch threads {m['torch_threads']}, load {m.get('load_average_1m_at_start', '?')} "
            f"at start. torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}, asymlora {v['asymlora']}, "
            f"commit {(meta['commit'] or 'unknown')[:12]}{'-dirty' if (meta['commit'] or '').endswith('-dirty') else ''}, "
            f"{meta['date']}.")


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    def default(o: Any) -> Any:
        if isinstance(o, Row):
            return asdict(o)
        if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
            return str(o)
        return str(o)

    data = json.dumps(payload, indent=2, default=default, sort_keys=False) + "\n"
    return atomic_write_bytes(path, data.encode())
