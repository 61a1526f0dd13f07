#!/usr/bin/env bash
# The paper's Table 7 / 11 / 13 rows on DomainBed's MNIST environments with the real vision backbones.
# Usage: scripts/vision_table7.sh [OUT] — set SMALL=1 for the reduced CPU run of docs/RESULTS.md (§10).
# Full settings (a GPU or a long CPU job): every image, 224 px... is too slow on a CPU; 56 px, all images,
# a learning-rate sweep per method on the ID validation split (tuned on the first seed), 3 seeds.
set -euo pipefail
OUT=${1:-runs/vision-table7}
METHODS="full-ft linear-probe lora:8 b-only:8 b-only:16 a-only:8 a-only:16"
if [ "${SMALL:-0}" = 1 ]; then
  ARGS=(--task-option per_env=300 --image-size 42 --epochs 3 --batch-size 16 --threads 1)
else
  ARGS=(--image-size 56 --epochs 5 --batch-size 64 --sweep --tune-on-first-seed)
fi
for task in rotated-mnist colored-mnist rotated-fashion-mnist; do
  for model in dinov2-s efficientnet-lite0; do
    nice -n 10 python -m asymlora grid --tasks "$task" --model "$model" --methods $METHODS --seeds 0 1 2 \
      "${ARGS[@]}" --out "$OUT" --keep-going --no-report
  done
done
python -m asymlora report "$OUT"
