r"""Zero-shot MMLU with a causal LM: the prompt, three scorers, per-question records and Table 8's summary.

Prompt (the question's outer whitespace stripped, as lm-evaluation-harness does)::

    The following are multiple choice questions (with answers) about {subject}.

    {question}
    A. {a}
    B. {b}
    C. {c}
    D. {d}
    Answer:

Scorers (choice = argmax over the four letters):

- ``letter``: s_L = log P(" L" | prompt) for L in A..D, the next-token log-probability of the letter.
- ``cloze``: s_L = log P(" " + answer_L | prompt), the summed log-probability of the answer text.
- ``cloze_norm``: s_L = log P(" " + answer_L | prompt) / bytes(" " + answer_L), the same per UTF-8 byte of
  the continuation (lm-evaluation-harness's ``acc_norm`` normalisation), which removes the bias towards
  short answers.

Summary: accuracy per subject, per category (the questions of its subjects pooled) and ``average`` (every
question pooled, as Hendrycks et al.'s ``evaluate.py`` and lm-evaluation-harness's ``mmlu`` group report
it), plus ``subject_mean`` (the unweighted mean over subjects). Each comes with a 95 % percentile-bootstrap
interval (:func:`asymlora.evaluation.bootstrap.bootstrap_interval`, 1,000 resamples, seed 0), resampled
within subjects for the pooled figures. With ``per_subject=N`` every subject has N questions, so
``average`` and ``subject_mean`` coincide.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from asymlora.data.mmlu import CATEGORIES, LETTERS, MMLUQuestion, category_of
from asymlora.evaluation.bootstrap import bootstrap_interval
from asymlora.evaluation.multiple_choice import score_choices, single_token_ids

__all__ = ["PROMPT", "SCORERS", "mmlu_prompt", "score_mmlu", "summarise", "category_key", "flat_metrics", "format_table"]

PROMPT = ("The following are multiple choice questions (with answers) about {subject}.\n\n"
          "{question}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:")
SCORERS = ("letter", "cloze", "cloze_norm")


def mmlu_prompt(q: MMLUQuestion) -> str:
    a, b, c, d = q.choices
    return PROMPT.format(subject=q.subject, question=q.question.strip(), a=a, b=b, c=c, d=d)


def _argmax_letter(scores: Sequence[float]) -> str:
    return LETTERS[int(np.argmax(scores))]


def score_mmlu(model: Any, tokenizer: Any, questions: Sequence[MMLUQuestion], *,
               scorers: Sequence[str] = ("letter", "cloze", "cloze_norm"), batch_size: int = 8,
               share_prefix: bool = True, progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """One record per question: ``subject``, ``index``, ``answer`` and, per scorer, ``choice`` + ``logprobs``.

    ``record[scorer] = {"choice": "C", "logprobs": [s_A, s_B, s_C, s_D]}`` with s_L as in the module doc.
    """
    unknown = [s for s in scorers if s not in SCORERS]
    if unknown or not scorers:
        raise ValueError(f"unknown scorer(s) {unknown or scorers}; use some of {', '.join(SCORERS)}")
    prompts = [mmlu_prompt(q) for q in questions]
    want_cloze = any(s.startswith("cloze") for s in scorers)
    conts = [[" " + c for c in q.choices] for q in questions] if want_cloze else None
    cands = single_token_ids(tokenizer, [" " + L for L in LETTERS]) if "letter" in scorers else None
    scores = score_choices(model, tokenizer, prompts, continuations=conts, candidates=cands,
                           batch_size=batch_size, share_prefix=share_prefix, progress=progress)
    records = []
    for i, q in enumerate(questions):
        rec: dict[str, Any] = {"subject": q.subject, "index": q.index, "answer": q.answer}
        per: dict[str, list[float]] = {}
        if scores.next_token is not None:
            per["letter"] = scores.next_token[i]
        if scores.continuation is not None:
            per["cloze"] = scores.continuation[i]
            per["cloze_norm"] = [s / len(c.encode("utf-8")) for s, c in zip(scores.continuation[i], conts[i])]
        for s in scorers:
            rec[s] = {"choice": _argmax_letter(per[s]), "logprobs": [float(x) for x in per[s]]}
        records.append(rec)
    return records


def _figure(correct: Sequence[float], groups: Sequence[str] | None, seed: int) -> dict[str, float]:
    low, high = bootstrap_interval(correct, groups=groups, seed=seed)
    return {"accuracy": float(np.mean(correct)), "low": low, "high": high, "n": len(correct)}


def summarise(records: Sequence[dict[str, Any]], scorer: str, *, seed: int = 0,
              category: Callable[[str], str] = category_of) -> dict[str, Any]:
    """Accuracy with 95 % intervals per subject, per category, ``average`` and ``subject_mean`` (module doc)."""
    rows = [r for r in records if scorer in r]
    if not rows:
        raise ValueError(f"no record has scores of the {scorer!r} scorer")
    correct = [float(r[scorer]["choice"] == r["answer"]) for r in rows]
    subjects = [r["subject"] for r in rows]
    by_subject: dict[str, list[float]] = {}
    for s, c in zip(subjects, correct):
        by_subject.setdefault(s, []).append(c)
    out: dict[str, Any] = {"scorer": scorer, "n": len(rows),
                           "subjects": {s: _figure(v, None, seed) for s, v in sorted(by_subject.items())}}
    cats: dict[str, Any] = {}
    for cat in CATEGORIES:
        keep = [i for i, s in enumerate(subjects) if category(s) == cat]
        if keep:
            cats[cat] = _figure([correct[i] for i in keep], [subjects[i] for i in keep], seed)
    out["categories"] = cats
    out["average"] = _figure(correct, subjects, seed)
    # subject_mean: bootstrap_interval hands the statistic the values resampled within each group, in the
    # order the groups first appear; with the values laid out subject by subject that order is `names`.
    names = list(by_subject)
    bounds = np.cumsum([len(by_subject[s]) for s in names])[:-1]
    laid_out = [c for s in names for c in by_subject[s]]
    low, high = bootstrap_interval(laid_out, groups=[s for s in names for _ in by_subject[s]], seed=seed,
                                   statistic=lambda x: float(np.mean([b.mean() for b in np.split(x, bounds)])))
    out["subject_mean"] = {"accuracy": float(np.mean([np.mean(v) for v in by_subject.values()])),
                           "low": low, "high": high, "n": len(names)}
    return out


def category_key(category: str) -> str:
    """``"Social Sciences"`` → ``"social_sciences"`` (the metric-name form of a category)."""
    return category.lower().replace(" ", "_")


def flat_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Flat names for a results file, for scorer ``s``: ``s_accuracy`` (every question pooled, Table 8's
    average) with its interval ``s_accuracy_low`` / ``_high``, ``s_subject_mean_accuracy`` and
    ``s_<category>_accuracy`` (``humanities``, ``stem``, ``social_sciences``, ``other``)."""
    p, avg = summary["scorer"], summary["average"]
    flat = {f"{p}_accuracy": avg["accuracy"], f"{p}_accuracy_low": avg["low"], f"{p}_accuracy_high": avg["high"],
            f"{p}_subject_mean_accuracy": summary["subject_mean"]["accuracy"]}
    for cat, fig in summary["categories"].items():
        flat[f"{p}_{category_key(cat)}_accuracy"] = fig["accuracy"]
    return flat


def format_table(summaries: Sequence[dict[str, Any]]) -> str:
    """Table 8's layout: one row per scorer, columns Humanities, STEM, Social Sciences, Other, Average (%)."""
    cols = list(CATEGORIES) + ["Average"]
    lines = [f"{'scorer':<11}" + "".join(f"{c:>22}" for c in cols)]
    for s in summaries:
        figs = [s["categories"].get(c) for c in CATEGORIES] + [s["average"]]
        cells = ["—" if f is None else f"{100 * f['accuracy']:.2f} [{100 * f['low']:.1f}, {100 * f['high']:.1f}]"
                 for f in figs]
        lines.append(f"{s['scorer']:<11}" + "".join(f"{c:>22}" for c in cells))
    n = {c: (summaries[0]["categories"].get(c) or {}).get("n", 0) for c in CATEGORIES} if summaries else {}
    lines.append(f"{'questions':<11}" + "".join(f"{n.get(c, 0):>22}" for c in CATEGORIES)
                 + f"{summaries[0]['n'] if summaries else 0:>22}")
    return "\n".join(lines)

