"""The runner: makes cases, has a worker process load each under a time and memory limit, classifies.

Classes (``CLASSES``): ``clean-error`` (a ``CheckpointError`` / ``ValueError`` in the project's
words, model unchanged), ``identical`` (loaded; outputs bit-identical to the saved model's),
``accepted-edit`` (loaded an edit no reader can detect, see :mod:`.cases`), and the defects
``silent-wrong`` (loaded a detectable edit with different outputs), ``raw-error`` (any other
exception, or a raw Python message), ``changed-model`` (an error after which the model differs from
before, or cannot take the good folder), ``hang`` (over the time limit: the worker is killed and
restarted) and ``crash`` (the worker died, e.g. killed by the memory limit).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .cases import BY_NAME, EXPECTED, make_case, make_origin

DEFECTS = ("silent-wrong", "raw-error", "changed-model", "hang", "crash")
CLASSES = ("clean-error", "identical", "accepted-edit") + DEFECTS
TESTS = Path(__file__).resolve().parents[1]


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    defects: list = field(default_factory=list)  # (class, case, reply)
    slowest: float = 0.0
    peak_mb: float = 0.0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def ok(self) -> bool:
        return not any(self.counts[d] for d in DEFECTS)

    def summary(self) -> dict:
        return {"cases": self.total, **{c: self.counts[c] for c in CLASSES},
                "slowest_load_s": round(self.slowest, 3), "worker_peak_mb": round(self.peak_mb),
                "wall_s": round(self.seconds, 1)}


def classify(case, reply: dict | None) -> str:
    if reply is None:
        return "crash"
    if reply["outcome"] == "loaded":
        if reply["identical"]:
            return "identical"
        return "silent-wrong" if case.detectable else "accepted-edit"
    if not reply["clean"]:
        return "raw-error"
    return "changed-model" if reply["changed"] else "clean-error"


class Worker:
    """One worker process (:mod:`.worker`), restarted after a hang or a crash."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        src = Path(__import__("asymlora").__file__).resolve().parents[1]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(src)]), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "fuzz.worker", str(self.memory_mb)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def ask(self, request: dict, timeout: float) -> tuple[dict | None, bool]:
        """(reply or None, hung)."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc and self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.stop()
            return None, False
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return None, True
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            return None, False
        return json.loads(line), False


def run(cases: int, seed: int = 0, *, start: int = 0, timeout: float = 20.0, memory_mb: int = 3000,
        work: Path | None = None, log=None) -> Report:
    """Run cases ``start .. start+cases-1`` of ``seed``; ``log(line)`` gets one JSON line per case."""
    report = Report()
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="asymlora-fuzz-")) if own else Path(work)
    origins, scratch = work / "origins", work / "cases"
    scratch.mkdir(parents=True, exist_ok=True)
    worker = Worker(memory_mb)
    t0 = time.perf_counter()
    try:
        for index in range(start, start + cases):
            case = make_case(index, seed, origins, scratch)
            origin = BY_NAME[case.origin]
            root = make_origin(origin, origins)
            request = {"folder": str(case.folder), "origin_folder": str(root / "folder"),
                       "expected": str(root / EXPECTED), "base": case.base, "origin_base": origin.base,
                       "peft": origin.flavour != "asymlora"}
            # the very first request also waits for the worker to import torch
            reply, hung = worker.ask(request, timeout + (120 if index == start else 0))
            kind = "hang" if hung else classify(case, reply)
            report.counts[kind] += 1
            if reply:
                report.slowest = max(report.slowest, reply["seconds"])
                report.peak_mb = max(report.peak_mb, reply.get("peak_mb", 0))
            if kind in DEFECTS:
                report.defects.append((kind, case, reply))
            if log is not None:
                log(json.dumps({"case": index, "origin": case.origin, "base": case.base, "mutation": case.mutation,
                                "detectable": case.detectable, "class": kind,
                                **({k: reply[k] for k in ("error_type", "message", "seconds") if k in reply}
                                   if reply else {})}))
            shutil.rmtree(case.folder, ignore_errors=True)
    finally:
        worker.stop()
        report.seconds = time.perf_counter() - t0
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return report
