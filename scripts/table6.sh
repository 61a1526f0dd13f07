#!/usr/bin/env bash
# The paper's Table 6 (summarisation scored by ROUGE-1/2/L) with asymlora's own pipeline.
#
#   scripts/table6.sh cpu  OUT   # the reduced CPU setting recorded in docs/RESULTS.md: XSum, 1 seed, default lr,
#                                # 2 epochs over a fixed 300-document subset of the training split, documents cut
#                                # to fit 256 tokens, 100 test documents, greedy decoding (≤ 64 new tokens)
#   scripts/table6.sh gpu  OUT   # the full setting for a GPU: XSum (beam 8) and CNN/DM (beam 4), 3 seeds, lr chosen
#                                # per method on validation ROUGE-L (swept on seed 0), documents up to 1,024
#                                # tokens, every training and test document, bf16
#
# Rows at equal parameter count, adapters on every attention query / key / value projection (Zhang et al.):
# B-only r=16 (B̂₀A_rand), A-only r=16 (B_rand Â₀), LoRA with orthogonal A r=8 (B̂₀Â_rand), LoRA with orthogonal
# B r=8 (B̂_rand Â₀), classic LoRA r=8 and the untuned model. MODEL=facebook/bart-large runs the paper's own
# encoder-decoder (online); the default is SmolLM2-135M. TARGETS overrides the projections' names.
set -euo pipefail
mode=${1:?usage: scripts/table6.sh cpu|gpu OUT}
out=${2:?usage: scripts/table6.sh cpu|gpu OUT}
model=${MODEL:-smollm2}
read -r -a targets <<< "${TARGETS:-q_proj k_proj v_proj}"
methods=(untuned b-only:16 a-only:16 lora-orthogonal:8 lora-b-orthogonal:8 lora:8)
case "$mode" in
  cpu) exec asymlora grid --tasks xsum --model "$model" --methods "${methods[@]}" --targets "${targets[@]}" \
         --seeds 0 --epochs 2 --batch-size 8 --eval-batch-size 8 --max-length 256 \
         --max-train-examples 300 --max-test-examples 100 --max-train-eval-examples 50 \
         --checkpoint-every 20 --threads "${THREADS:-auto}" --out "$out" ;;
  gpu) asymlora grid --tasks xsum --model "$model" --methods "${methods[@]}" --targets "${targets[@]}" \
         --seeds 0 1 2 --sweep --tune-on-first-seed --epochs 3 --batch-size 16 --eval-batch-size 16 \
         --max-length 1024 --task-option select_on=rougeL --task-option num_beams=8 \
         --task-option no_repeat_ngram_size=3 --mixed-precision bf16 --out "$out/xsum"
       exec asymlora grid --tasks cnn-dm --model "$model" --methods "${methods[@]}" --targets "${targets[@]}" \
         --seeds 0 1 2 --sweep --tune-on-first-seed --epochs 3 --batch-size 16 --eval-batch-size 16 \
         --max-length 1024 --task-option select_on=rougeL --task-option num_beams=4 \
         --task-option no_repeat_ngram_size=3 --mixed-precision bf16 --out "$out/cnn-dm" ;;
  *) echo "mode must be cpu or gpu" >&2; exit 2 ;;
esac
