#!/usr/bin/env bash
# Section 12c of docs/RESULTS.md: Rotated Fashion-MNIST × DINOv2-S with the settings of section 12
# (lr swept on ID validation of seed 0, 3 seeds, 500 images per environment, 42 px, 3 epochs).
# Usage: docs/results/vision-fashion/vision_fashion.sh [OUT]   (default runs/vision-fashion)
set -euo pipefail
OUT=${1:-runs/vision-fashion}
M="full-ft linear-probe lora:8 b-only:8 b-only:16 a-only:8 a-only:16"
nice -n 10 asymlora grid --tasks rotated-fashion-mnist --model dinov2-s --methods $M --seeds 0 1 2 --sweep \
  --tune-on-first-seed --task-option per_env=500 --image-size 42 --epochs 3 --batch-size 16 --threads 1 \
  --out "$OUT" --keep-going --no-report
asymlora report "$OUT"
