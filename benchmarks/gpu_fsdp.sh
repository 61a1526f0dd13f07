#!/usr/bin/env bash
# FSDP2 (`asymlora run --fsdp`) against DDP on CUDA GPUs with NCCL: the GPU half of tests/test_fsdp.py (prepared, not
# yet run: no GPU was lent in the session that wrote it). Needs >= 2 GPUs (NCCL refuses two processes on one GPU).
# No download: a tiny Llama folder and the toy instructions are written from tests/toy.py.
# Run from the repository root:  NPROC=2 bash benchmarks/gpu_fsdp.sh  → prints both results and the largest differences
set -euo pipefail
out=${OUT:-runs/gpu-fsdp}; mkdir -p "$out"
py=${PYTHON:-python}
n=${NPROC:-2}
export PYTHONPATH=$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}
"$py" -c "import torch; assert torch.cuda.device_count() >= $n, f'{torch.cuda.device_count()} GPUs, need $n'"
"$py" - "$out" <<'EOF'
import json, sys
from pathlib import Path
from toy import instruction_records, lm_tokenizer, tiny_llama
root = Path(sys.argv[1])
tiny_llama(0).save_pretrained(root / "llama"); lm_tokenizer().save_pretrained(root / "llama")
(root / "inst.jsonl").write_text("".join(json.dumps({"instruction": r.instruction, "output": r.response}) + "\n"
                                          for r in instruction_records()))
EOF
args=(run --task "$out/inst.jsonl" --task-kind instructions --model "$out/llama" --method b-only --rank 4 --epochs 2
      --batch-size 4 --lr 3e-2 --targets q_proj v_proj --max-test-examples 20 --quiet)
"$py" -m torch.distributed.run --nproc_per_node "$n" -m asymlora "${args[@]}" --out "$out/ddp"
"$py" -m torch.distributed.run --nproc_per_node "$n" -m asymlora "${args[@]}" --out "$out/fsdp" --fsdp
"$py" - "$out" <<'EOF'
import json, sys
from pathlib import Path
import torch
import asymlora
from toy import tiny_llama
root = Path(sys.argv[1])
runs = {k: next((root / k).glob("*/*/b-only-r4/seed0")) for k in ("ddp", "fsdp")}
res = {k: json.loads((v / "result.json").read_text()) for k, v in runs.items()}
print("val", {k: r["val"] for k, r in res.items()})
ids = torch.tensor([[2, 5, 6, 8, 4, 3], [2, 7, 12, 4, 3, 13]])
with torch.no_grad():
    out = {k: asymlora.load_adapter(tiny_llama(0), v / "adapter").eval()(input_ids=ids).logits for k, v in runs.items()}
print("max |logits fsdp - ddp|", (out["fsdp"] - out["ddp"]).abs().max().item(), "(CPU/gloo: 0.0)")
EOF
