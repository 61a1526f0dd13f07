r"""Reading JSON that came from a file: strict, bounded, and with errors that say what is wrong.

``json.loads`` accepts duplicate keys (the last wins), ``NaN`` / ``Infinity``, numbers such as
``1e400`` that overflow to infinity, integers of any length, and fails with a raw ``RecursionError``
on deep nesting. :func:`loads_strict` refuses all of these with a :class:`JsonError` (a ``ValueError``).

JSON Lines are split on ``\n`` alone (:func:`jsonl_lines`): ``str.splitlines`` also breaks at U+2028, U+2029,
U+0085 and other characters that a JSON string may hold unescaped (``json.dumps(..., ensure_ascii=False)``
writes them raw), and so cut valid records in two.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterator

MAX_BYTES = 64 << 20  # a config file of more than 64 MiB is not one asymlora or PEFT wrote
MAX_INT_DIGITS = 40


class JsonError(ValueError):
    """A JSON text that is malformed or uses something strict parsing refuses."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonError(f"duplicate key {key!r} (a JSON object must name each key once)")
        out[key] = value
    return out


def _constant(name: str) -> float:
    raise JsonError(f"{name} is not a JSON number; write a finite number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonError(f"the number {text[:40]} is too large for a float")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonError(f"an integer of {len(text)} digits is too long")
    return int(text)


def loads_strict(data: str | bytes, *, max_bytes: int = MAX_BYTES) -> Any:
    """Parse JSON text, refusing duplicate keys, non-finite and overlong numbers, and deep nesting."""
    if len(data) > max_bytes:
        raise JsonError(f"the text is {len(data):,} bytes, more than the {max_bytes:,} allowed")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise JsonError(f"not UTF-8 text (byte {err.start})") from None
    try:
        return json.loads(data, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float,
                          parse_int=_int)
    except json.JSONDecodeError as err:
        raise JsonError(f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise JsonError("nested too deeply to read") from None


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    r"""``(line number, line)`` for each non-blank line of a JSON Lines text, split on ``\n`` only (a trailing
    ``\r`` dropped), so that line separators inside JSON strings stay in their record."""
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield number, line
