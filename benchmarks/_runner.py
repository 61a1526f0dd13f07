"""Shared entry point of the benchmark scripts: the options of ``asymlora bench`` with other default sections.

Run from the repository root, e.g. ``python benchmarks/saved_bytes.py --model minilm``; every script
accepts the options of ``asymlora bench`` (``--help``), with ``--sections`` defaulting to its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

try:
    import asymlora  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main(sections: Sequence[str], description: str, argv: Sequence[str] | None = None) -> int:
    from asymlora.cli import bench

    parser = argparse.ArgumentParser(prog=Path(sys.argv[0]).name, description=description)
    sub = parser.add_subparsers(dest="command")
    bench.register(sub)
    args = parser.parse_args(["bench", "--sections", *sections, *(sys.argv[1:] if argv is None else argv)])
    return bench.run(args)
