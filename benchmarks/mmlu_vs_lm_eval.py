"""MMLU letter scorer vs lm-evaluation-harness on the same questions (base SmolLM2 and a B-only PEFT adapter).

    python benchmarks/mmlu_vs_lm_eval.py --per-subject 3 --out mmlu_vs_lm_eval.json

Prints the agreement of per-question letter predictions, the largest difference of the four
log-probabilities, and every disagreement with both sets of log-probabilities and our top-2 margin.
Exit status 1 when agreement is below --min-agreement (default 0.99) for either model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

try:
    import asymlora  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from asymlora.atomic import atomic_write_json  # noqa: E402
from asymlora.data.mmlu import load_mmlu, subset  # noqa: E402
from asymlora.evaluation.crosscheck import run_crosscheck  # noqa: E402
from asymlora.models.causal_lm import causal_lm_folder  # noqa: E402
from asymlora.train.rundir import environment  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2", help="built-in name or model folder (default smollm2)")
    p.add_argument("--per-subject", type=int, default=3, help="questions per subject (default 3)")
    p.add_argument("--subjects", help="comma-separated subjects (default: all 57)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--min-agreement", type=float, default=0.99)
    p.add_argument("--out", help="write the report (JSON) here")
    args = p.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    questions = load_mmlu()
    if args.subjects:
        wanted = {s.strip() for s in args.subjects.split(",")}
        questions = [q for q in questions if q.subject in wanted]
    questions = subset(questions, args.per_subject)
    folder = causal_lm_folder(args.model)
    env = environment(0)  # before the run: the commit and versions it starts from
    with tempfile.TemporaryDirectory(prefix="mmlu-vs-lm-eval-") as tmp:
        report = run_crosscheck(folder, questions, tmp, batch_size=args.batch_size)
    report["config"] = vars(args)
    report["environment"] = env
    ok = True
    for label in ("base", "b-only-peft"):
        r = report[label]
        ok &= r["agreement"] >= args.min_agreement
        print(f"{label}: {r['agree']}/{r['questions']} letter predictions agree ({100 * r['agreement']:.2f} %); "
              f"max |Δ log P| {r['max_abs_logprob_diff']:.2e}, median {r['median_abs_logprob_diff']:.2e}")
        for d in r["disagreements"]:
            print(f"  index {d['index']} ({d['subject']}): ours {d['ours']} {d['ours_logprobs']}, "
                  f"lm-eval {d['lm_eval']} {d['lm_eval_logprobs']}, our top-2 margin {d['ours_margin']:.2e}")
    print(f"the adapter changed {report['adapter_changed_choices']} of {len(questions)} letter choices")
    if args.out:
        atomic_write_json(Path(args.out), report)
        print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
