"""The per-layer table of a checkpoint, written as a few groups of layers that share one entry.

A model's adapted layers repeat: SmolLM2-135M's 210 adapted layers are 7 module names
(``model.layers.{}.self_attn.q_proj`` …) times 30 block indices, and within each of those 7 the shapes,
rank, scale and storage are the same. Writing one entry per layer costs about 0.18 KiB each (38 KiB
for SmolLM2, 0.8 % of a B-only file); writing one entry per group costs a few hundred bytes in all.

A group is ``{"name": template, "index": ranges, <the shared entry>}``: the template is a layer name
whose all-digit dotted parts are replaced by ``{}``, and ``index`` lists the integer tuples that fill
it, run-length coded as ``"0-29"`` (one slot) or ``[[0, 1], [0, 2], …]`` (several slots).

A frozen factor that is regenerated from its seed is checked against a fingerprint
(:func:`asymlora.init.fingerprint`, a linear function of the matrix plus its norm). A group stores the
sum of its layers' fingerprints: one changed matrix moves that sum by O(its norm), while round-off moves
it by ~1e-7 per layer, so a group sum detects what per-layer fingerprints detect, naming the group
rather than the layer.

Reading a group is bounded: an index expands to at most :data:`MAX_LAYERS` names (counted before
anything is expanded), indices are at most nine digits, and a template is filled slot by slot, never
through ``str.format`` (whose format specs, like ``{:>999999999}``, could allocate gigabytes).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

_DIGITS = re.compile(r"^\d+$")
_RUN = re.compile(r"^(\d{1,9})(?:-(\d{1,9}))?$")
MAX_LAYERS = 100_000
MAX_INDEX = 10**9


def split_name(name: str, variable: set[int] | None = None) -> tuple[str, tuple[int, ...]]:
    """``"model.layers.12.mlp.up_proj"`` → ``("model.layers.{}.mlp.up_proj", (12,))``.

    ``variable``: which all-digit parts (0 = the first) become slots; the others stay in the template.
    """
    template, slots, k = [], [], 0
    for part in name.split("."):
        if _DIGITS.match(part):
            if variable is None or k in variable:
                template.append("{}")
                slots.append(int(part))
            else:
                template.append(part)
            k += 1
        else:
            template.append(part.replace("{", "{{").replace("}", "}}"))
    return ".".join(template), tuple(slots)


def join_name(template: str, slots: tuple[int, ...]) -> str:
    """Fill the ``{}`` slots of ``template`` (``{{`` / ``}}`` stand for braces); ``ValueError`` if the
    template is malformed or has another number of slots."""
    parts, k, i, n = [], 0, 0, len(template)
    while i < n:
        c = template[i]
        if template.startswith("{{", i) or template.startswith("}}", i):
            parts.append(c)
            i += 2
        elif template.startswith("{}", i):
            if k >= len(slots):
                raise ValueError(f"layer name template {template[:80]!r} has more slots than its index gives")
            parts.append(str(slots[k]))
            k += 1
            i += 2
        elif c in "{}":
            raise ValueError(f"layer name template {template[:80]!r} has a '{c}' that is neither a slot '{{}}' "
                             "nor an escaped brace")
        else:
            parts.append(c)
            i += 1
    if k != len(slots):
        raise ValueError(f"layer name template {template[:80]!r} has {k} slots but its index gives {len(slots)}")
    return "".join(parts)


def encode_index(slots: list[tuple[int, ...]]) -> Any:
    """Sorted index tuples → ``"0-5,7"`` when each has one slot, ``[]`` when none, else a list of lists."""
    if not slots or not slots[0]:
        return []
    if len(slots[0]) > 1:
        return [list(s) for s in slots]
    values = sorted(s[0] for s in slots)
    runs, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(runs)


def decode_index(index: Any) -> list[tuple[int, ...]]:
    """The inverse of :func:`encode_index`; raises ``ValueError`` on a malformed or oversized index."""
    if isinstance(index, list):
        if not index:
            return [()]
        if len(index) > MAX_LAYERS:
            raise ValueError(f"layer group index lists {len(index)} layers, more than {MAX_LAYERS}")
        out = []
        for item in index:
            if (not isinstance(item, list) or not item
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < MAX_INDEX for v in item)):
                raise ValueError(f"layer group index entry {str(item)[:40]} is not a list of block numbers")
            out.append(tuple(item))
        if len({len(t) for t in out}) > 1:
            raise ValueError("layer group index entries have different numbers of slots")
        return out
    if not isinstance(index, str):
        raise ValueError(f"layer group index {str(index)[:40]} is neither a range string nor a list")
    runs = []
    for run in index.split(","):
        m = _RUN.match(run)
        if m is None:
            raise ValueError(f"layer group index {index[:40]!r} is not of the form '0-5,7' (block numbers)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"layer group index range {run!r} runs backwards")
        runs.append((lo, hi))
    if sum(hi - lo + 1 for lo, hi in runs) > MAX_LAYERS:
        raise ValueError(f"layer group index {index[:40]!r} names more than {MAX_LAYERS} layers")
    return [(v,) for lo, hi in runs for v in range(lo, hi + 1)]


def _shared_part(entry: dict[str, Any]) -> dict[str, Any]:
    """A layer entry without its per-layer fingerprints (they are summed per group instead)."""
    shared = {k: v for k, v in entry.items() if k not in ("A", "B")}
    for which in "AB":
        shared[which] = {k: v for k, v in entry[which].items() if k != "fingerprint"}
    return shared


def group_layers(entries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-layer entries (each factor may carry a ``fingerprint`` list) → groups, in first-seen order."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for name, entry in entries.items():
        template, _ = split_name(name)
        shared = _shared_part(entry)
        key = (template, json.dumps(shared, sort_keys=True))
        group = groups.setdefault(key, {"names": [], "fingerprints": {"A": [], "B": []}, **shared})
        group["names"].append(name)
        for which in "AB":
            if entry[which].get("fingerprint") is not None:
                group["fingerprints"][which].append(entry[which]["fingerprint"])
    out = []
    for group in groups.values():
        names = group.pop("names")
        for which, fps in group.pop("fingerprints").items():
            if fps:
                group[which]["fingerprint"] = [float(f"{v:.9g}") for v in sum_fingerprints(fps)]
        slots = [split_name(n)[1] for n in names]
        # digit parts equal across the group stay in the name: Sequential "0.2", "1.2", … → "{}.2"
        variable = {i for i in range(len(slots[0])) if len({s[i] for s in slots}) > 1}
        group["name"] = split_name(names[0], variable)[0]
        slots = [split_name(n, variable)[1] for n in names]
        out.append({"name": group.pop("name"), "index": encode_index(slots), **group})
    return out


def expand_groups(groups: Iterable[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Groups → (``{layer name: entry}`` without fingerprints, fingerprint checks).

    Each check is ``{"factor": "A"|"B", "layers": [names], "fingerprint": summed list, "label": str}``.
    Raises ``ValueError`` (with the group) when a group is malformed.
    """
    if not isinstance(groups, list):
        raise ValueError(f"layer_groups must be a list of groups, got {type(groups).__name__}")
    layers: dict[str, dict[str, Any]] = {}
    checks: list[dict[str, Any]] = []
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("name"), str) or "index" not in group:
            raise ValueError(f"malformed layer group {str(group)[:120]!r}")
        slots = decode_index(group["index"])
        if len(layers) + len(slots) > MAX_LAYERS:
            raise ValueError(f"the layer groups name more than {MAX_LAYERS} layers")
        names = [join_name(group["name"], s) for s in slots]
        shared = {k: v for k, v in group.items() if k not in ("name", "index")}
        for which in "AB":
            info = shared.get(which)
            if not isinstance(info, dict):
                raise ValueError(f"layer group {group['name']!r} has no entry for factor {which}")
            if "fingerprint" in info:
                checks.append({"factor": which, "layers": names, "fingerprint": info["fingerprint"],
                               "label": f"{group['name']} [{group['index']}]" if len(names) > 1 else names[0]})
        for name in names:
            if name in layers:
                raise ValueError(f"layer {name!r} appears in two layer groups")
            layers[name] = {k: (dict(v) if k in ("A", "B") else v) for k, v in shared.items()}
            for which in "AB":
                layers[name][which].pop("fingerprint", None)
    return layers, checks


def checks_from_layers(entries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Format-1 per-layer fingerprints of regenerated (not stored) factors as one-layer checks; a stored
    factor is covered by the tensor file's sha256, whatever fingerprint an early file wrote for it."""
    return [{"factor": which, "layers": [name], "fingerprint": entry[which]["fingerprint"], "label": name}
            for name, entry in entries.items() for which in "AB"
            if isinstance(entry.get(which), dict) and "fingerprint" in entry[which]
            and not entry[which].get("stored", False)]


def sum_fingerprints(fingerprints: list[list[float]]) -> list[float]:
    return [sum(values) for values in zip(*fingerprints)]
