"""How many CPU threads torch should use.

torch uses one thread per core by default. When another process keeps a core busy, a 2-thread pool
on a 2-core machine waits on its descheduled thread at every parallel region, and a training step
becomes several times slower than with one thread (measured: 6 s against 1.6 s for a MiniLM step).
``auto_threads`` samples ``/proc/stat`` for a fraction of a second and leaves the busy cores alone. Time spent
by *niced* processes does not count as busy: the kernel gives a normal-priority thread almost all of a core
that a nice-19 job shares with it (weights 1024 : 15), so such a core is as good as free.
"""

from __future__ import annotations

import os
import time


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def parse_cpu_line(line: str) -> tuple[int, int] | None:
    """(total, available) jiffies from the aggregate ``cpu`` line of ``/proc/stat``: user nice system idle iowait
    irq softirq steal [guest guest_nice] — guest time is already inside user / nice, so it is not added again.
    Available = idle + iowait + nice (see the module doc)."""
    fields = line.split()
    if len(fields) < 5 or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]
    return sum(values), values[3] + values[4] + values[1]


def _cpu_times() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            return parse_cpu_line(f.readline())
    except (OSError, ValueError):
        return None


def busy_cores(window: float = 0.5) -> float | None:
    """Cores kept busy by other processes during ``window`` seconds (this process sleeps meanwhile);
    ``None`` where ``/proc/stat`` is not available."""
    a = _cpu_times()
    if a is None:
        return None
    time.sleep(window)
    b = _cpu_times()
    if b is None or b[0] == a[0]:
        return None
    total, available = b[0] - a[0], b[1] - a[1]
    return (total - available) / total * (os.cpu_count() or 1)


def auto_threads(window: float = 0.5) -> tuple[int, str]:
    """(threads, explanation): every available core that other processes are not keeping busy."""
    cores = available_cores()
    busy = busy_cores(window)
    if busy is None:
        return cores, f"{cores} cores"
    free = max(1, min(cores, round(cores - busy)))
    note = f"{cores} cores" + (f", {busy:.1f} busy with other processes" if busy >= 0.3 else "")
    return free, note


def set_threads(value: str | int | None) -> str | None:
    """Apply ``--threads``: None / "default" leaves torch's default, "auto" uses :func:`auto_threads`,
    a number is used as is. Returns a line to print, or None."""
    import torch

    if value is None or value == "default":
        return None
    if value == "auto":
        n, note = auto_threads()
        torch.set_num_threads(n)
        return f"torch threads: {n} ({note})"
    n = int(value)
    if n < 1:
        raise ValueError(f"--threads must be ≥ 1, 'auto' or 'default', got {value!r}")
    torch.set_num_threads(n)
    return f"torch threads: {n}"
