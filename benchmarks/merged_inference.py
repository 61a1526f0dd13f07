"""Inference time of merged adapters (asymlora merge, merge + unload, PEFT merge_and_unload) against the base model.

    python benchmarks/merged_inference.py --model minilm [--device cuda --dtype bf16] [--json out.json]
"""

import sys

from _runner import main

if __name__ == "__main__":
    sys.exit(main(["merged"], __doc__.splitlines()[0]))
