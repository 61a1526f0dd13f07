#!/usr/bin/env bash
# The paper's Table 8 (instruction tuning → zero-shot MMLU by category) with asymlora's own pipeline.
#
#   scripts/table8.sh cpu  OUT   # the reduced CPU setting recorded in docs/RESULTS.md: 1 seed, default lr, one
#                                # epoch over a fixed 600-record subset of the training split (the ~290 of them
#                                # that fit in 256 tokens train), 2 MMLU questions per subject (114)
#   scripts/table8.sh gpu  OUT   # the full setting for a GPU: 3 seeds, lr chosen per method on the validation
#                                # loss (swept on seed 0), every MMLU question, bf16
#
# Rows: the untuned model, LoRA r=32, B-only r=32, A-only r=32 and B-only r=64 (LoRA r=32's parameter count),
# adapters on the attention query / value projections (add --targets all-linear for every linear layer).
set -euo pipefail
mode=${1:?usage: scripts/table8.sh cpu|gpu OUT}
out=${2:?usage: scripts/table8.sh cpu|gpu OUT}
methods=(untuned b-only:32 a-only:32 lora:32 b-only:64)
case "$mode" in
  cpu) exec asymlora grid --tasks natural-instructions --model "${MODEL:-smollm2}" --methods "${methods[@]}" \
         --seeds 0 --epochs 1 --batch-size 8 --eval-batch-size 8 --task-option per_subject=2 \
         --max-train-examples 600 --max-train-eval-examples 50 --checkpoint-every 25 --threads "${THREADS:-auto}" --out "$out" ;;
  gpu) exec asymlora grid --tasks natural-instructions --model "${MODEL:-smollm2}" --methods "${methods[@]}" \
         --seeds 0 1 2 --sweep --tune-on-first-seed --epochs 3 --batch-size 16 --eval-batch-size 16 \
         --task-option per_subject=all --task-option per_subtask=all --max-length 512 \
         --mixed-precision bf16 --out "$out" ;;
  *) echo "mode must be cpu or gpu" >&2; exit 2 ;;
esac
