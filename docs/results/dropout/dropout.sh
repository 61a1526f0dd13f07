#!/usr/bin/env bash
# Issue 17: what adapter dropout on A·x (dropout_on="projection", the cheaper one) does to accuracy, against the
# paper's and PEFT's input dropout and against none. The demo's settings (MiniLM-L6, movie-review sentiment,
# 1,000 training sentences, 2 epochs, batch 32, lr 3e-3), LoRA r=8 and B-only r=8, 3 seeds; one results folder
# per dropout setting (the report averages one configuration per folder).
# Usage: docs/results/dropout/dropout.sh [OUT]   (default runs/dropout)
set -euo pipefail
OUT=${1:-runs/dropout}
C="--tasks sentiment --model minilm --methods lora:8 b-only:8 --seeds 0 1 2 --lr 3e-3 --epochs 2 --batch-size 32
   --max-length 64 --max-train-examples 1000 --max-val-examples 400 --no-report --keep-going"
asymlora grid $C --out "$OUT/none"
asymlora grid $C --dropout 0.1 --dropout-on input --out "$OUT/input"
asymlora grid $C --dropout 0.1 --dropout-on projection --out "$OUT/projection"
for d in none input projection; do asymlora report "$OUT/$d"; done
