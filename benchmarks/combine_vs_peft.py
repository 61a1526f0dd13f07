"""Exact combination of shared-A adapters (asymlora.combine) against PEFT add_weighted_adapter (linear, svd, cat).

    python benchmarks/combine_vs_peft.py --model minilm [--device cuda --dtype bf16] [--json out.json]
"""

import sys

from _runner import main

if __name__ == "__main__":
    sys.exit(main(["combine"], __doc__.splitlines()[0]))
