#!/usr/bin/env bash
# Issue 17's sections on a CUDA GPU in bf16 (prepared, not yet run: no GPU was lent in the session that wrote it).
# Uses only the smollm2-shaped model (random weights, no download: the device machine has no network).
# Run from the repository root:  bash benchmarks/gpu_issue17.sh  → JSON records under ${OUT:-runs}/
set -euo pipefail
out=${OUT:-runs}; mkdir -p "$out"
py=${PYTHON:-python}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
# first a seconds-long check that the lean path (dropout mask drawn with random_ over the full int64 range) runs on CUDA
"$py" -m asymlora bench --model tiny --quick --device cuda --dtype bf16 --sections saved step --quiet > "$out/tiny-cuda.txt"
for p in 0.1 0; do
  "$py" -m asymlora bench --model smollm2-shaped --device cuda --dtype bf16 --sections saved step --dropout "$p" \
    --repeats 10 --json "$out/shaped-cuda-bf16-step-d$p.json" --quiet | tee "$out/shaped-cuda-bf16-step-d$p.txt"
done
"$py" -m asymlora bench --model smollm2-shaped --device cuda --dtype bf16 --sections multi --serve-counts 16 64 \
  --json "$out/shaped-cuda-bf16-multi.json" --quiet | tee "$out/shaped-cuda-bf16-multi.txt"
# issue 17 step 1: generation for requests of N adapters (N seeds and one seed) against PEFT's adapter_names=, and the
# memory the resident adapters take (compare the ratios with S-LoRA's and Punica's against PEFT-style batching)
"$py" -m asymlora bench --model smollm2-shaped --device cuda --dtype bf16 --sections serve --serve-counts 16 64 256 \
  --json "$out/shaped-cuda-bf16-serve.json" --quiet | tee "$out/shaped-cuda-bf16-serve.txt"
