"""Step time (interleaved rounds, median) and peak step memory (CUDA max_memory_allocated, or the CPU profiler's allocation events) of the same six configurations.

    python benchmarks/step.py --model minilm [--device cuda --dtype bf16] [--json out.json]
"""

import sys

from _runner import main

if __name__ == "__main__":
    sys.exit(main(["step"], __doc__.splitlines()[0]))
