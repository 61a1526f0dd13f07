"""Adapter folder sizes: asymlora B-only and LoRA against PEFT LoRA and VeRA.

    python benchmarks/file_size.py --model minilm [--device cuda --dtype bf16] [--json out.json]
"""

import sys

from _runner import main

if __name__ == "__main__":
    sys.exit(main(["file"], __doc__.splitlines()[0]))
