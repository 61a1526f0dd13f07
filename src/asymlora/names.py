"""Matching module names: exact or dotted-suffix names, full-match regular expressions, closest names.

A pattern in ``targets``, ``exclude``, ``rank_pattern`` or ``alpha_pattern`` (and in a PEFT config)
matches a qualified module name when it equals it or a dotted suffix of it (``"query"`` matches
``"encoder.layer.0.attention.self.query"``), or else as a full-match regular expression.

Python's ``re`` backtracks: a repetition of something that itself repeats or alternates, like
``(.|.)*Z`` or ``(a+)+``, can take time exponential in the name's length, and several unbounded
repetitions in a row take polynomial time of high degree. Patterns come from files (adapter and PEFT
configs), so :func:`check_pattern` refuses those shapes before any matching: a repeated group must
contain neither a repetition nor an alternation, at most :data:`MAX_UNBOUNDED` unbounded repetitions
(``*``, ``+``, ``{m,}``) appear, bounded counts are at most :data:`MAX_COUNT`, and a pattern is at most
:data:`MAX_LENGTH` characters. Names are short (a few hundred characters at most), so what is left
runs in microseconds.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable, Sequence

MAX_LENGTH = 200_000  # an exported adapter's target regex lists every adapted name
MAX_UNBOUNDED = 3
MAX_COUNT = 1000
_COUNT = re.compile(r"\{(\d*)(,?)(\d*)\}")


def name_matches(name: str, pattern: str) -> bool:
    """Exact or dotted-suffix match: ``"query"`` matches ``"encoder.layer.0.attention.self.query"``."""
    return name == pattern or name.endswith("." + pattern)


def pattern_matches(name: str, pattern: str) -> bool:
    """A name match, or else a full match of ``pattern`` (checked by :func:`check_pattern`) as a regex."""
    if name_matches(name, pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def check_pattern(pattern: object, what: str) -> str:
    """``pattern`` if it is a string that compiles and cannot make matching explode; else ``ValueError``."""
    if not isinstance(pattern, str):
        raise ValueError(f"{what} must be a string (a module name or a regular expression), got {pattern!r}")
    if len(pattern) > MAX_LENGTH:
        raise ValueError(f"{what} is a pattern of {len(pattern)} characters (at most {MAX_LENGTH}); "
                         "list the module names instead")
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as err:
        raise ValueError(f"{what} {pattern!r} is not a valid regular expression ({err}); "
                         "give a module name or fix the expression") from None
    problem = _backtracking_risk(pattern)
    if problem:
        raise ValueError(f"{what} {pattern!r} {problem}, which can make matching take minutes; "
                         "write out the module names, or a simpler expression such as "
                         r"'.*\.layers\.\d+\.(q|v)_proj'")
    return pattern


def _backtracking_risk(pattern: str) -> str | None:
    """Why ``pattern`` could backtrack badly, or ``None``: a scan of its syntax (it already compiles)."""
    # one frame per open group: [has a repetition inside, has an alternation inside]
    stack: list[list[bool]] = [[False, False]]
    unbounded, i, n = 0, 0, len(pattern)
    last_group: list[bool] | None = None  # the group that just closed, if the previous token was ')'
    while i < n:
        c = pattern[i]
        closed, last_group = last_group, None
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i = _class_end(pattern, i)
            continue
        if c == "(":
            stack.append([False, False])
            i += 1
            continue
        if c == ")":
            inner = stack.pop() if len(stack) > 1 else [False, False]
            stack[-1][0] |= inner[0]
            stack[-1][1] |= inner[1]
            last_group = inner
            i += 1
            continue
        if c == "|":
            stack[-1][1] = True
            i += 1
            continue
        repeat = None  # (bounded max or None for unbounded)
        length = 1
        if c in "*+":
            repeat = (None,)
        elif c == "?":
            repeat = (1,)
        elif c == "{":
            m = _COUNT.match(pattern, i)
            if m and (m.group(1) or m.group(3)):
                low, comma, high = m.group(1), m.group(2), m.group(3)
                top = None if comma and not high else int(high or low)
                if int(low or 0) > MAX_COUNT or (top is not None and top > MAX_COUNT):
                    return f"repeats something more than {MAX_COUNT} times"
                repeat, length = (top,), m.end() - i
        if repeat is None:
            i += 1
            continue
        if i + length < n and pattern[i + length] in "?+":  # lazy or possessive modifier
            length += 1
        many = repeat[0] is None or repeat[0] > 1
        if repeat[0] is None:
            unbounded += 1
            if unbounded > MAX_UNBOUNDED:
                return f"has more than {MAX_UNBOUNDED} unbounded repetitions (*, +, {{m,}})"
        if many and closed is not None and (closed[0] or closed[1]):
            return "repeats a group that itself repeats or alternates"
        stack[-1][0] |= many
        i += length
    return None


def _class_end(pattern: str, start: int) -> int:
    """The index just after the character class that opens at ``start``."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


def closest(wanted: str, names: Iterable[str]) -> str:
    """The names most like ``wanted`` (and their leaf names), quoted, for an error message."""
    names = [n for n in names if n]
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    close = difflib.get_close_matches(wanted, list(names) + leaves, n=5, cutoff=0.4)
    return ", ".join(repr(c) for c in close) if close else "(no similar names)"


def unmatched(patterns: Sequence[str], names: Sequence[str], *, regex: bool = True) -> list[str]:
    """The patterns that match none of ``names``."""
    match = pattern_matches if regex else name_matches
    return [p for p in patterns if not any(match(n, p) for n in names)]


def peft_pattern_matches(name: str, key: str) -> bool:
    """PEFT's match of a ``rank_pattern`` / ``alpha_pattern`` key, ``re.match(rf"(.*\\.)?({key})$", name)``:
    the key as a full-match regex of the name or of a dotted suffix of it (without the extra ``.*``)."""
    starts = [0] + [i + 1 for i, c in enumerate(name) if c == "."]
    try:
        return any(re.fullmatch(key, name[i:]) is not None for i in starts)
    except re.error:
        return False
