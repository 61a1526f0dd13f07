"""``python -m fuzz --cases 5000 --seed 0`` (from tests/, or ``PYTHONPATH=tests``): run fuzz cases and print
the figures; exits 1 if any case is a defect (silent wrong load, raw error, changed model, hang, crash)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .runner import run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    p.add_argument("--cases", type=int, default=500, help="number of cases (default 500)")
    p.add_argument("--seed", type=int, default=0, help="run seed: case i of seed s is always the same case")
    p.add_argument("--start", type=int, default=0, help="index of the first case (to resume or split a run)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds one load may take before it counts as a hang")
    p.add_argument("--memory-mb", type=int, default=3000, help="address-space limit of the worker process (MiB)")
    p.add_argument("--log", type=Path, help="write one JSON line per case here")
    p.add_argument("--work", type=Path, help="folder for the origins and cases (default: a temporary one)")
    args = p.parse_args(argv)
    if args.cases < 1 or args.timeout <= 0:
        p.error("--cases must be ≥ 1 and --timeout > 0")
    out = args.log.open("w") if args.log else None
    try:
        report = run(args.cases, args.seed, start=args.start, timeout=args.timeout, memory_mb=args.memory_mb,
                     work=args.work, log=(lambda line: out.write(line + "\n")) if out else None)
    finally:
        if out:
            out.close()
    print(json.dumps({"seed": args.seed, "start": args.start, **report.summary()}, indent=1))
    for kind, case, reply in report.defects[:20]:
        print(f"{kind}: case {case.index} ({case.origin} onto {case.base}): {case.mutation} -> {reply}", file=sys.stderr)
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
