r"""ROUGE-1/2/L/Lsum F-measures of generated summaries (Lin 2004), from Google's ``rouge-score`` package.

For a reference r and a candidate c, both lower-cased, tokenised on non-alphanumerics and Porter-stemmed
(``use_stemmer=True``, as the summarisation literature and the paper's Table 6 report):

    ROUGE-n:  P = |ngrams(c) ∩ ngrams(r)| / |ngrams(c)|,  R = |ngrams(c) ∩ ngrams(r)| / |ngrams(r)|   (multiset ∩)
    ROUGE-L:  P = LCS(c, r) / |c|,  R = LCS(c, r) / |r|                  (longest common subsequence of tokens)
    ROUGE-Lsum: ROUGE-L over sentences (the union LCS of each reference sentence with all candidate sentences)
    F = 2PR / (P + R)   (0 when P + R = 0)

Sentences for ROUGE-Lsum are lines: references keep their own line breaks (CNN/DM highlights are one a
line); a generated summary is cut into sentences after ``.``, ``!`` or ``?`` followed by white space
(:func:`sentence_lines`). For a one-sentence summary (XSum) ROUGE-Lsum equals ROUGE-L.

:func:`rouge_records` scores each pair; :func:`rouge_summary` gives the mean of each score over the documents
and its 95 % percentile-bootstrap interval (:func:`asymlora.evaluation.bootstrap.bootstrap_interval`).
"""

from __future__ import annotations

import re
from typing import Sequence

from rouge_score import rouge_scorer

from asymlora.evaluation.bootstrap import bootstrap_interval

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentence_lines(text: str) -> str:
    """``text`` with one sentence a line (existing line breaks kept), for ROUGE-Lsum."""
    lines = [s.strip() for part in text.splitlines() for s in _SENTENCE_END.split(part)]
    return "\n".join(s for s in lines if s)


def rouge_records(references: Sequence[str], generated: Sequence[str]) -> list[dict[str, float]]:
    """One ``{rouge1, rouge2, rougeL, rougeLsum}`` dict of F-measures per (reference, generated) pair."""
    if len(references) != len(generated):
        raise ValueError(f"{len(references)} references for {len(generated)} generated summaries")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out = []
    for ref, gen in zip(references, generated):
        scores = scorer.score(sentence_lines(ref), sentence_lines(gen))
        out.append({name: float(scores[name].fmeasure) for name in ROUGE_TYPES})
    return out


def rouge_summary(records: Sequence[dict[str, float]], *, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """``{name: mean, name_low / name_high: the bootstrap interval}`` for each ROUGE type over ``records``."""
    if not records:
        raise ValueError("no scored summaries")
    out: dict[str, float] = {}
    for name in ROUGE_TYPES:
        values = [r[name] for r in records]
        low, high = bootstrap_interval(values, level=level, seed=seed)
        out[name] = sum(values) / len(values)
        out[f"{name}_low"], out[f"{name}_high"] = low, high
    return out
