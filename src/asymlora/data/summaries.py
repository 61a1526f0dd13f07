r"""Document → summary pairs for summarisation: BIG-bench XSum and CNN/DM, and a user's own file.

Sources (both in the pinned ``bigbench==1.0.0`` sdist, read through :func:`asymlora.sources.fetch_pin` like
natural_instructions, see :mod:`asymlora.data.instructions`):

- **xsum** (pin ``gem-xsum``, ``bigbench/benchmark_tasks/gem/xsum/task.json``): 1,001 BBC articles, each with its
  one-sentence XSum reference summary (``input`` / ``target``); uid ``xsum:<example number>``.
- **cnn-dm** (pin ``factuality-of-summary``, ``factuality_of_summary/cnn_dm.json``, the FIB benchmark of
  Tam et al. 2022): 150 CNN/DailyMail articles, each with two candidate summaries of which ``lbl`` marks the factual
  one. The factual candidate has the form of a CNN/DM reference (cased, one highlight a line, ``" ."`` before
  the line ends; 148 of 150 have several lines), the other the lower-cased, tokenised form of a system output, so
  the factual one is taken as the reference (see docs/DATA.md); uid ``cnn-dm:<line number>``.
- **a user's file** (:func:`load_summary_file`): .jsonl / .csv / .tsv with a document and a summary column
  (default ``document`` / ``summary``), and optionally a ``split`` column; uid ``<file name>:<line>``.

:func:`split_pairs` makes train / validation / test with :func:`asymlora.data.task.split_examples`: a pair's key
is ``sha256(seed, document)``, so the split depends on neither the file order nor any library version
(:data:`XSUM_FRACTIONS`: 1,001 → 751 / 50 / 200). Pairs with an empty document or summary are refused; a
document seen twice keeps its first pair (:func:`dedupe_pairs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from asymlora.data.task import DataError, dedupe, split_examples
from asymlora.data.userfile import SPLIT_NAMES, read_records
from asymlora.sources import fetch_pin
from asymlora.sources.pins import FOLDERS

__all__ = ["SummaryPair", "XSUM_FRACTIONS", "CNN_DM_FRACTIONS", "load_gem_xsum", "load_cnn_dm", "load_summary_file",
           "dedupe_pairs", "split_pairs"]

XSUM_FRACTIONS = (0.75, 0.05, 0.20)  # 1,001 pairs -> 751 train / 50 validation / 200 test
CNN_DM_FRACTIONS = (0.60, 0.10, 0.30)  # 150 pairs -> 90 train / 15 validation / 45 test


@dataclass(frozen=True)
class SummaryPair:
    document: str
    summary: str
    uid: str
    source: str

    # the fields split_examples and dedupe key on
    @property
    def text(self) -> str:
        return self.document

    @property
    def text_pair(self) -> None:
        return None

    @property
    def label(self) -> str:
        return self.summary


def _origin(pin_name: str, member: str) -> str:
    pin = FOLDERS[pin_name]
    return f"{pin.package}=={pin.version}:{pin.folder}/{member}"


def load_gem_xsum() -> list[SummaryPair]:
    """The 1,001 (article, one-sentence summary) pairs of BIG-bench ``gem/xsum``, in file order."""
    task = json.loads((fetch_pin("gem-xsum") / "task.json").read_text(encoding="utf-8"))
    origin = _origin("gem-xsum", "task.json")
    out = []
    for i, ex in enumerate(task["examples"]):
        target = ex["target"][0] if isinstance(ex["target"], list) else ex["target"]
        out.append(SummaryPair(ex["input"].strip(), str(target).strip(), f"xsum:{i}", origin))
    return out


def load_cnn_dm() -> list[SummaryPair]:
    """The 150 CNN/DM (article, reference highlights) pairs of BIG-bench ``factuality_of_summary`` (the factual
    candidate of each record; see the module doc), highlights one a line."""
    path = fetch_pin("factuality-of-summary") / "cnn_dm.json"
    origin = _origin("factuality-of-summary", "cnn_dm.json")
    out = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):  # the two canary lines
            continue
        rec = json.loads(line)
        reference = rec["list_candidates"][rec["lbl"]]
        out.append(SummaryPair(rec["source"].strip(), reference.strip(), f"cnn-dm:{line_no}", origin))
    return out


def load_summary_file(path: str | Path, *, document_column: str = "document", summary_column: str = "summary",
                      split_column: str = "split") -> tuple[list[SummaryPair], list[str | None]]:
    """(pairs, the split each names or ``None``) of a .jsonl / .csv / .tsv file (see the module doc)."""
    path = Path(path)
    pairs, split_of = [], []
    for line_no, rec in read_records(path, [document_column, summary_column], [split_column]):
        doc, summary = str(rec[document_column] or "").strip(), str(rec[summary_column] or "").strip()
        if not doc or not summary:
            raise DataError(f"empty {document_column!r} or {summary_column!r}", str(path), line_no)
        split = rec.get(split_column)
        if split not in (None, ""):
            if str(split).strip().lower() not in SPLIT_NAMES:
                raise DataError(f"unknown split {split!r}; use train, validation or test", str(path), line_no)
            split = SPLIT_NAMES[str(split).strip().lower()]
        pairs.append(SummaryPair(doc, summary, f"{path.name}:{line_no}", str(path)))
        split_of.append(split or None)
    if not pairs:
        raise DataError("no (document, summary) pairs", str(path))
    return pairs, split_of


def dedupe_pairs(pairs: Iterable[SummaryPair]) -> tuple[list[SummaryPair], int]:
    """(pairs with the first of each document kept, how many repeats were dropped)."""
    kept, repeats, _ = dedupe(pairs, drop_conflicts=False)
    return kept, repeats


def split_pairs(pairs: Sequence[SummaryPair], fractions: Sequence[float] = XSUM_FRACTIONS,
                seed: int = 0) -> dict[str, list[SummaryPair]]:
    """``{"train", "validation", "test"}``, seeded and order-independent (see the module doc)."""
    return split_examples(pairs, fractions, seed=seed, stratify=False)
