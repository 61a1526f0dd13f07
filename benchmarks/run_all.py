"""The whole suite (every section) on one model: the same as ``asymlora bench``.

    python benchmarks/run_all.py --model minilm --json bench-minilm.json
    python benchmarks/run_all.py --model smollm2 --threads 1
"""

import sys

from _runner import main

if __name__ == "__main__":
    sys.exit(main(["saved", "step", "file", "merged", "combine", "multi"], __doc__.splitlines()[0]))
