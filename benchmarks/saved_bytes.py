"""Bytes each adapted layer keeps for backward (saved_tensors_hooks), per adapter branch and for the whole model: floor, PEFT LoRA / LoRA-FA / VeRA, asymlora LoRA / B-only.

    python benchmarks/saved_bytes.py --model minilm [--device cuda --dtype bf16] [--json out.json]
"""

import sys

from _runner import main

if __name__ == "__main__":
    sys.exit(main(["saved"], __doc__.splitlines()[0]))
