"""One batch whose rows use N = 1, 4, 16 different B-only adapters (asymlora.load_many) against PEFT mixed-adapter batches (adapter_names=) and one adapter at a time.

    python benchmarks/multi_adapter.py --model minilm [--device cuda --dtype bf16] [--json out.json]
"""

import sys

from _runner import main

if __name__ == "__main__":
    sys.exit(main(["multi"], __doc__.splitlines()[0]))
