"""A user's own data: a .csv, .tsv or .jsonl file with a text (or text pair) and a label column.

- ``.csv``: comma-separated with a header row, standard CSV quoting.
- ``.tsv``: tab-separated with a header row, no quoting (as in GLUE's files: quotes are text).
- ``.jsonl``: one JSON object per line.

The kind is ``task_kind`` if given, else inferred: every label an integer (``3``, ``"3"``,
``3.0``) with at most ``MAX_INFERRED_CLASSES`` distinct values -> classification; every label a
number otherwise -> regression; labels that are names (``"pos"``) -> classification. Class ids
are the sorted distinct labels (numerically when they are integers, so labels 0..K-1 keep their
ids). A file with a split column (``split``: train / validation (or dev, valid, val) / test) keeps
its splits, and a missing validation or test split is carved out of train; a file without one is
split 80 / 10 / 10 by ``seed`` (stratified for classification). Every error names the file, the
line and the problem.

As in the built-in tasks, a text (pair) that appears on several rows keeps its first row, and for
classification a text given two different labels is dropped altogether (a warning says how many rows went).
Each split must end up with at least one example; a label that is ``nan`` / ``inf`` is refused (it is a
missing value, not a class), as are a header that names a column twice and JSON that strict parsing refuses
(:func:`asymlora.jsonfile.loads_strict`: duplicate keys, overlong numbers, deep nesting).
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from asymlora.data.task import DataError, Example, Task, dedupe, require_splits, split_examples
from asymlora.jsonfile import JsonError, jsonl_lines, loads_strict

SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None}
MAX_INFERRED_CLASSES = 20
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test"}


def is_data_file(name: str) -> bool:
    return Path(name).suffix.lower() in SUFFIXES


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text (byte {err.start}: {raw[err.start:err.start + 1]!r}); "
                        f"save the file as UTF-8", str(path), line) from None


def read_records(path: Path, columns: Sequence[str], optional: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) with the wanted ``columns`` (each required) and ``optional`` ones, for each data row
    of a .csv / .tsv / .jsonl file (see the module doc for the formats)."""
    text = _decode(path)
    delimiter = SUFFIXES[path.suffix.lower()]
    if delimiter is None:
        for lineno, line in jsonl_lines(text):
            try:
                rec = loads_strict(line)
            except JsonError as err:
                raise DataError(f"bad JSON: {err}", str(path), lineno) from None
            if not isinstance(rec, dict):
                raise DataError(f"expected a JSON object, got {type(rec).__name__}", str(path), lineno)
            for c in columns:
                if c not in rec:
                    raise DataError(f"no field {c!r}; the fields are {sorted(rec)}", str(path), lineno)
            yield lineno, rec
        return

    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    header: list[str] | None = None
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise DataError(f"malformed CSV: {err}", str(path), start) from None
        lineno, start = start, reader.line_num + 1
        if not row or all(not c.strip() for c in row):
            continue
        if header is None:
            header = [c.strip() for c in row]
            repeated = sorted({c for c in header if header.count(c) > 1})
            if repeated:
                raise DataError(f"the header names {repeated} more than once; give each column its own name",
                                str(path), lineno)
            for c in columns:
                if c not in header:
                    raise DataError(f"no column {c!r}; the columns are {header}. Name the right one "
                                    f"with the column flags", str(path), lineno)
            continue
        if len(row) != len(header):
            raise DataError(f"{len(row)} fields, the header has {len(header)}"
                            + (" (an unquoted comma in the text?)" if delimiter == "," else ""), str(path), lineno)
        rec = dict(zip(header, row))
        yield lineno, {k: v for k, v in rec.items() if k in columns or k in optional}
    if header is None:
        raise DataError("the file is empty", str(path))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _label_key(value: Any) -> str:
    num = _number(value)
    if num is not None and math.isfinite(num) and num == int(num):
        return str(int(num))
    return str(value).strip()


def load_user_file(path: str | Path, *, text_column: str = "text", text_pair_column: str | None = None,
                   label_column: str = "label", task_kind: str | None = None, split_column: str = "split",
                   seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1), name: str | None = None) -> Task:
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"unsupported file type {path.suffix!r}: use .csv, .tsv or .jsonl", str(path))
    if not path.is_file():
        raise DataError("no such file", str(path))
    if task_kind not in (None, "classification", "regression"):
        raise DataError(f"task_kind must be 'classification' or 'regression', not {task_kind!r}", str(path))
    columns = [text_column, label_column] + ([text_pair_column] if text_pair_column else [])

    rows: list[tuple[int, str, str | None, Any, str | None]] = []  # line, text, pair, raw label, split
    has_split = None
    for lineno, rec in read_records(path, columns, [split_column]):
        texts = []
        for col in [text_column] + ([text_pair_column] if text_pair_column else []):
            value = rec[col]
            if not isinstance(value, str):
                raise DataError(f"{col!r} is {type(value).__name__}, not text", str(path), lineno)
            if not value.strip():
                raise DataError(f"empty text in {col!r}", str(path), lineno)
            texts.append(value.strip())
        label = rec[label_column]
        if label is None or (isinstance(label, str) and not label.strip()):
            raise DataError(f"empty label in {label_column!r}", str(path), lineno)
        if not isinstance(label, (str, int, float)) or isinstance(label, bool):
            raise DataError(f"label {label!r} is neither a number nor a name", str(path), lineno)
        split = rec.get(split_column)
        if has_split is None:
            has_split = split is not None
        if has_split:
            if split is None:
                raise DataError(f"no {split_column!r} value, though earlier lines have one", str(path), lineno)
            key = str(split).strip().lower()
            if key not in SPLIT_NAMES:
                raise DataError(f"split {split!r} is not one of train, validation (dev), test", str(path), lineno)
            split = SPLIT_NAMES[key]
        rows.append((lineno, texts[0], texts[1] if text_pair_column else None, label, split))
    if not rows:
        raise DataError("no data rows", str(path))

    kind = task_kind or _infer_kind(path, rows)
    examples = [Example(text, _value(path, kind, label, ln), pair, uid=f"line {ln}") for ln, text, pair, label, _ in rows]
    split_of = {ex.uid: r[4] for ex, r in zip(examples, rows)}
    examples, dropped = _without_repeats(path, examples, kind)
    label_names: tuple[str, ...] = ()
    if kind == "classification":  # class ids: the sorted distinct labels of the rows kept
        keys = {ex.label for ex in examples}
        numeric = all(_number(k) is not None for k in keys)
        label_names = tuple(sorted(keys, key=float if numeric else None))  # type: ignore[arg-type]
        if len(label_names) < 2:
            raise DataError(f"only one distinct label ({label_names[0]!r}): nothing to classify", str(path))
        index = {k: i for i, k in enumerate(label_names)}
        examples = [replace(ex, label=index[ex.label]) for ex in examples]

    stratify = kind == "classification"
    if has_split:
        splits = with_file_splits(path, examples, [split_of[ex.uid] for ex in examples], fractions, seed, stratify,
                                  split_column)
    else:
        splits = split_examples(examples, fractions, seed=seed, stratify=stratify)
    require_splits(splits, str(path))
    return Task(
        name=name or path.stem, kind=kind, splits=splits, label_names=label_names,
        primary_metric="accuracy" if kind == "classification" else "pearson",
        text_fields=("text", "text_pair") if text_pair_column else ("text",),
        source=str(path), description=f"user data from {path.name}" + (f" ({dropped})" if dropped else ""),
    )


def _value(path: Path, kind: str, label: Any, line: int) -> str | float:
    """A row's label as a regression score (a finite number) or a class key (see :func:`_label_key`)."""
    num = _number(label)
    if num is not None and not math.isfinite(num):
        raise DataError(f"label {label!r} is not a finite number" + (" (regression)" if kind == "regression" else
                        ": a missing value? drop the row or give it its label"), str(path), line)
    if kind == "regression":
        if num is None:
            raise DataError(f"label {label!r} is not a finite number (regression)", str(path), line)
        return num
    return _label_key(label)


def _without_repeats(path: Path, examples: list[Example], kind: str) -> tuple[list[Example], str]:
    """The examples with each text (pair) once, as the built-in tasks are (:func:`~asymlora.data.task.dedupe`):
    the first row of a repeated text is kept, and for classification every row of a text given two different
    labels is dropped. Returns the kept examples and a note of what was dropped ("" if nothing), also warned."""
    kept, repeats, conflicts = dedupe(examples, drop_conflicts=kind == "classification")
    if not repeats:
        return kept, ""
    note = f"{len(examples) - len(kept)} of {len(examples)} rows dropped: {repeats} repeated text(s)"
    if conflicts:
        note += f", among them {conflicts} text(s) given different labels, dropped altogether"
    warnings.warn(f"{path}: {note}", stacklevel=3)
    return kept, note


def _infer_kind(path: Path, rows: list[tuple[int, str, str | None, Any, str | None]]) -> str:
    numbers = [_number(label) for *_, label, _ in rows]
    names = [(ln, label) for (ln, *_, label, _), num in zip(rows, numbers) if num is None]
    if names:
        if len(names) < len(rows):  # some numbers, some names: almost surely a typo
            ln, label = names[0]
            raise DataError(f"label {label!r} is not a number while other labels are; fix it, or pass "
                            f"task_kind='classification' to use the labels as class names", str(path), ln)
        return "classification"
    integral = all(math.isfinite(n) and n == int(n) for n in numbers)  # type: ignore[arg-type]
    if integral and len(set(numbers)) <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def with_file_splits(path: Path, examples: list[Any], split_of: list[str | None], fractions: Sequence[float],
                     seed: int, stratify: bool, split_column: str) -> dict[str, list[Any]]:
    """Splits named by a file's split column (``split_of``), the missing validation / test split carved out of train
    at ``fractions`` (any examples with ``text`` / ``label``, see :func:`asymlora.data.task.split_examples`)."""
    splits: dict[str, list[Any]] = {"train": [], "validation": [], "test": []}
    for ex, s in zip(examples, split_of):
        splits[s].append(ex)  # type: ignore[index]
    if not splits["train"]:
        raise DataError(f"the {split_column!r} column names no train rows", str(path))
    carve = [s for s in ("validation", "test") if not splits[s]]
    if carve:  # take the missing split(s) out of train, at the requested fractions
        f = dict(zip(("train", "validation", "test"), fractions))
        total = f["train"] + sum(f[s] for s in carve)
        parts = split_examples(splits["train"], [f["train"] / total] + [f[s] / total for s in carve],
                               seed=seed, stratify=stratify, names=["train", *carve])
        splits.update(parts)
    return splits
