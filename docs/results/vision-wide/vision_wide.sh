#!/usr/bin/env bash
# Issue 14: RotatedMNIST with a wider learning-rate grid per method family (the chosen rates of the first
# sweep sat at the grid's edge), per_env=1000 (80 validation / 200 ID test images), 3 seeds, one thread, niced.
set -uo pipefail
export PYTHONPATH=/work/wt/vision-run/src
PY=/work/main/.venv/bin/python
OUT=/work/runs/vision-wide
COMMON="--tasks rotated-mnist --seeds 0 1 2 --tune-on-first-seed --task-option per_env=1000 --image-size 42 --epochs 3 --batch-size 16 --threads 1 --keep-going --no-report"
for model in dinov2-s efficientnet-lite0; do
  echo "=== $model adapters start $(date -u +%T)"
  nice -n 10 $PY -m asymlora grid $COMMON --model $model --methods lora:8 b-only:8 b-only:16 a-only:8 a-only:16 \
    --lr 3e-4 1e-3 3e-3 1e-2 --out $OUT/adapters
  echo "=== $model lp start $(date -u +%T)"
  nice -n 10 $PY -m asymlora grid $COMMON --model $model --methods linear-probe --lr 1e-3 3e-3 1e-2 3e-2 --out $OUT/lp
  echo "=== $model full-ft start $(date -u +%T)"
  nice -n 10 $PY -m asymlora grid $COMMON --model $model --methods full-ft --lr 1e-5 2e-5 5e-5 1e-4 2e-4 --out $OUT/full-ft
  echo "=== $model end $(date -u +%T)"
done
