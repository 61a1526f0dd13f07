#!/usr/bin/env python
"""Does llama.cpp apply an asymlora adapter the way asymlora does?

A B-only adapter is trained on SmolLM2-135M-Instruct (the project's ``smollm2``: float32 weights dequantised
from the pinned ``SmolLM2-135M-Instruct.Q4_1.gguf``; or ``--model gemma3-270m``, Gemma-3-270M base from its
pinned ``Q4_K_M`` GGUF) with real instruction data, written with
``asymlora.export_peft``, converted by llama.cpp's own ``convert_lora_to_gguf.py`` and applied by llama.cpp
(through ``llama-cpp-python``) to **the same GGUF file**. On held-out prompts, at every position, the script
compares next-token log-probabilities ``log p`` (log-softmax of the logits over the whole vocabulary):

* **base**: llama.cpp's base model against ours. They share the 4-bit weights, but llama.cpp also rounds the
  activations to 8 bits in its quantised matrix products, so they differ by that rounding alone;
* **adapted**: llama.cpp with the adapter against asymlora's adapted model;
* **shift**: the adapter's effect, Δ = log p(adapted) − log p(base), computed on each side. The relative error
  ‖Δ_llama − Δ_ours‖₂ / ‖Δ_ours‖₂ (over every position and token) is the figure that says whether llama.cpp
  applies the update s·B·A with the right factors, layout and scale s = α/r; its tolerance (``--tolerance``,
  0.25) is below what a wrong scale gives (lora_scale 2 or 0.5: relative error 1.0 or 0.5 where Δ is linear in
  the scale, less for an update large enough that the log-softmax saturates — measured 0.88 / 0.48 on SmolLM2,
  0.36 / 0.33 on Gemma-3, whose adapter moved the model by 3.3 nats); both are run as controls and must fail;
* top-1 agreement (the argmax token equal) and the mean KL(p_ours ‖ p_llama) in nats, for base and adapted.

llama.cpp is not a dependency of asymlora. ``scripts/build_llamacpp.sh`` builds ``llama-cpp-python`` from its
sdist (which vendors llama.cpp and its conversion scripts) and prints the folder to pass as ``--llama-cpp-dir``.

    python scripts/verify_llamacpp.py --llama-cpp-dir /path/to/vendor/llama.cpp \
        --out docs/results/llamacpp/smollm2-b-only-r16.json

Exit status 0 when the shift is within tolerance and both wrong-scale controls are outside it, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

import asymlora
from asymlora.atomic import atomic_write_json
from asymlora.data.registry import get_task
from asymlora.models import gemma3, smollm2
from asymlora.models.causal_lm import load_causal_lm
from asymlora.provenance import environment
from asymlora.tasks.protocol import Limits

TASK = "natural-instructions"
# the built-in causal LMs that come as a GGUF file: (the verified GGUF, the float32 folder dequantised from it)
MODELS = {"smollm2": (smollm2.gguf_path, smollm2.smollm2_folder), "gemma3-270m": (gemma3.gguf_path, gemma3.gemma3_folder)}
WRONG_SCALES = (2.0, 0.5)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llama-cpp-dir", type=Path, default=os.environ.get("LLAMA_CPP_DIR"),
                   help="a llama.cpp source folder holding convert_lora_to_gguf.py and gguf-py/ "
                        "(default: $LLAMA_CPP_DIR)")
    p.add_argument("--model", default="smollm2", choices=sorted(MODELS), help="default smollm2")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--targets", default="all-linear", help="adapter targets (default: every linear layer)")
    p.add_argument("--steps", type=int, default=40, help="training steps of the B-only adapter")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=256, help="tokens per training and evaluation example")
    p.add_argument("--prompts", type=int, default=12, help="held-out (validation) examples compared")
    p.add_argument("--tolerance", type=float, default=0.25, help="largest relative error of the shift that passes")
    p.add_argument("--outtype", default="f32", choices=["f32", "f16"], help="the converted adapter's dtype")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, help="folder for the adapter and its GGUF (default: a temporary one)")
    p.add_argument("--out", type=Path, help="write the result JSON here")
    args = p.parse_args(argv)
    if args.llama_cpp_dir is None or not (Path(args.llama_cpp_dir) / "convert_lora_to_gguf.py").is_file():
        p.error("--llama-cpp-dir (or $LLAMA_CPP_DIR) must name a llama.cpp source folder with "
                "convert_lora_to_gguf.py; scripts/build_llamacpp.sh builds llama-cpp-python and prints one")
    return args


def train_b_only(model: torch.nn.Module, tokenizer: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Inject a B-only adapter and train it for ``args.steps`` AdamW steps on the task's training split."""
    config = asymlora.AdapterConfig.preset("b-only", rank=args.rank, targets=args.targets, seed=args.seed)
    asymlora.inject(model, config)
    data = get_task(TASK).encode("train", tokenizer, Limits(max_length=args.max_length))
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed)).tolist()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    model.train()
    losses, t0 = [], time.perf_counter()
    for step in range(args.steps):
        picks = [order[(step * args.batch_size + i) % len(order)] for i in range(args.batch_size)]
        loss = model(**data.collate([data[i] for i in picks])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return {"rank": args.rank, "alpha": config.alpha_for(args.rank), "targets": args.targets, "steps": args.steps,
            "lr": args.lr, "batch_size": args.batch_size, "loss_first": losses[0], "loss_last": losses[-1],
            "train_seconds": time.perf_counter() - t0}


def convert(llama_cpp_dir: Path, peft_dir: Path, base_dir: Path, out: Path, outtype: str) -> float:
    """Run llama.cpp's ``convert_lora_to_gguf.py`` (with its own gguf-py) on the exported PEFT folder."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(llama_cpp_dir / "gguf-py"), str(llama_cpp_dir)])}
    cmd = [sys.executable, str(llama_cpp_dir / "convert_lora_to_gguf.py"), "--base", str(base_dir),
           "--outfile", str(out), "--outtype", outtype, str(peft_dir)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"convert_lora_to_gguf.py failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return time.perf_counter() - t0


def eval_prompts(tokenizer: Any, args: argparse.Namespace) -> list[list[int]]:
    """Token ids of the first ``args.prompts`` validation examples (prompt and response, as trained)."""
    data = get_task(TASK).encode("validation", tokenizer, Limits(max_length=args.max_length))
    return [list(data[i]["input_ids"]) for i in range(min(args.prompts, len(data)))]


def torch_log_probs(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)


def llama_log_probs(llm: Any, ids: list[int]) -> torch.Tensor:
    llm.reset()
    llm.eval(ids)
    return torch.log_softmax(torch.from_numpy(llm.scores[:len(ids)].copy()).double(), dim=-1)


class Agreement:
    """Running sums for top-1 agreement and mean KL(p ‖ q) between two sets of log-probabilities."""

    def __init__(self) -> None:
        self.positions = self.top1 = 0
        self.kl = 0.0
        self.max_abs_top = 0.0

    def add(self, ours: torch.Tensor, theirs: torch.Tensor) -> None:
        self.positions += ours.shape[0]
        self.top1 += int((ours.argmax(-1) == theirs.argmax(-1)).sum())
        self.kl += float((ours.exp() * (ours - theirs)).sum())
        top = ours.topk(10, dim=-1).indices  # the likely tokens: where a difference matters
        self.max_abs_top = max(self.max_abs_top, float((ours.gather(-1, top) - theirs.gather(-1, top)).abs().max()))

    def result(self) -> dict[str, float]:
        return {"positions": self.positions, "top1_agreement": self.top1 / self.positions,
                "mean_kl_nats": self.kl / self.positions, "max_abs_logprob_diff_top10": self.max_abs_top}


class Shift:
    """‖Δ_theirs − Δ_ours‖² and ‖Δ_ours‖² summed over positions and tokens, and ⟨Δ_ours, Δ_theirs⟩."""

    def __init__(self) -> None:
        self.err = self.norm = self.theirs = self.dot = 0.0

    def add(self, ours: torch.Tensor, theirs: torch.Tensor) -> None:
        self.err += float(((theirs - ours) ** 2).sum())
        self.norm += float((ours ** 2).sum())
        self.theirs += float((theirs ** 2).sum())
        self.dot += float((ours * theirs).sum())

    def result(self) -> dict[str, float]:
        return {"relative_error": math.sqrt(self.err / self.norm),
                "cosine": self.dot / math.sqrt(self.norm * self.theirs),
                "norm_shift_ours": math.sqrt(self.norm)}


def compare(model: torch.nn.Module, prompts: list[list[int]], base_gguf: Path, lora_gguf: Path,
            args: argparse.Namespace) -> dict[str, Any]:
    from llama_cpp import Llama

    n_ctx = max(len(p) for p in prompts) + 8
    opts = dict(n_ctx=n_ctx, n_batch=n_ctx, n_threads=args.threads, logits_all=True, verbose=False, seed=args.seed)
    llama = {"base": Llama(str(base_gguf), **opts), "adapted": Llama(str(base_gguf), lora_path=str(lora_gguf), **opts)}
    for s in WRONG_SCALES:
        llama[f"scale {s:g}"] = Llama(str(base_gguf), lora_path=str(lora_gguf), lora_scale=s, **opts)
    base_agree, adapted_agree = Agreement(), Agreement()
    adapter_effect = Agreement()  # ours adapted against ours base: how far the adapter moves the model
    shifts = {name: Shift() for name in llama if name != "base"}
    t0 = time.perf_counter()
    for ids in prompts:
        with asymlora.disabled(model):
            ours_base = torch_log_probs(model, ids)
        ours = torch_log_probs(model, ids)
        theirs = {name: llama_log_probs(llm, ids) for name, llm in llama.items()}
        base_agree.add(ours_base, theirs["base"])
        adapted_agree.add(ours, theirs["adapted"])
        adapter_effect.add(ours, ours_base)
        for name, shift in shifts.items():
            shift.add(ours - ours_base, theirs[name] - theirs["base"])
    return {"base": base_agree.result(), "adapted": adapted_agree.result(), "adapter_effect": adapter_effect.result(),
            "shift": shifts.pop("adapted").result(),
            "wrong_scale_controls": {name: s.result() for name, s in shifts.items()},
            "compare_seconds": time.perf_counter() - t0}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import llama_cpp  # fail here, before training, when llama-cpp-python is not installed

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gguf_path, hf_folder = MODELS[args.model]
    model, tokenizer = load_causal_lm(args.model)
    training = train_b_only(model, tokenizer, args)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        peft_dir = asymlora.export_peft(model, work / "peft", base_model_name_or_path=str(hf_folder()),
                                        task_type="CAUSAL_LM")
        lora_gguf = work / f"adapter-{args.outtype}.gguf"
        convert_s = convert(args.llama_cpp_dir, peft_dir, hf_folder(), lora_gguf, args.outtype)
        prompts = eval_prompts(tokenizer, args)
        figures = compare(model, prompts, gguf_path(), lora_gguf, args)
        gguf_bytes = lora_gguf.stat().st_size
    ok = figures["shift"]["relative_error"] <= args.tolerance and all(
        c["relative_error"] > args.tolerance for c in figures["wrong_scale_controls"].values())
    result = {"passed": ok, "tolerance": args.tolerance, "model": args.model, "gguf": gguf_path().name, "task": TASK, "prompts": len(prompts),
              "training": training, "adapter_gguf": {"outtype": args.outtype, "bytes": gguf_bytes,
                                                     "convert_seconds": convert_s},
              **figures, "llama_cpp_python": llama_cpp.__version__,
              "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "environment": environment(args.seed)}
    print(json.dumps({k: result[k] for k in ("passed", "base", "adapted", "adapter_effect", "shift",
                                             "wrong_scale_controls")}, indent=2))
    if args.out:
        atomic_write_json(args.out, result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
