"""asymlora's performance benchmark against PEFT (``asymlora bench``, ``benchmarks/*.py``).

Everything compared in a table is measured in the same run: configurations are interleaved, and each
row is a ratio of two measurements with both absolute figures beside it. See docs/PERFORMANCE.md.
Needs ``transformers`` and ``peft`` (the experiment extras); the core library does not import this.
"""

from .report import Row, format_table
from .sections import DEFAULT_SECTIONS, SECTIONS, Settings
from .suite import build_settings, render, run_suite

__all__ = ["DEFAULT_SECTIONS", "SECTIONS", "Settings", "Row", "build_settings", "run_suite", "render", "format_table"]
