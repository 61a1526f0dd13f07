"""The generator: original adapter and PEFT folders, and seeded mutations of them.

An *origin* is a folder saved from a small model (:mod:`.models`) with an adapter whose trained
factors and head were given random values, together with that model's output on a fixed input (the
reference a load must reproduce). A *case* is a copy of one origin's folder with one mutation, and
the base model it is loaded onto. Case ``i`` of seed ``s`` is always the same case.

Each case says whether its edit is **detectable**. Some edits cannot be detected by any reader
without a secret key, and loading them is not a defect: a tensor file re-written with other *values*
by someone who also put its new sha256 into the config (the loader then faithfully loads the edited
adapter), and for PEFT folders (which carry no checksum of their tensors) any change of tensor
values, and in a folder PEFT wrote, a changed ``lora_alpha`` / ``alpha_pattern`` / ``use_rslora``.
Their loads are counted apart (``accepted-edit``); every other load that gives different outputs is
a **silent wrong load**.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file

import asymlora

from . import edit
from .models import TARGETS, build, example_input, family


@dataclass(frozen=True)
class Origin:
    name: str
    base: str  # models.build kind
    preset: str
    flavour: str  # "asymlora", "peft" (exported by asymlora: config digest in the header), "peft-native"
    options: tuple = ()
    store_frozen: bool = False


ORIGINS = [
    Origin("b-only", "net", "b-only", "asymlora", (("dropout", 0.1), ("train_modules", ["classifier"]))),
    Origin("b-only-stored", "net", "b-only", "asymlora", (("train_modules", ["classifier"]),), store_frozen=True),
    Origin("lora-patterns", "net", "lora", "asymlora",
           (("rank_pattern", {"proj": 2}), ("alpha_pattern", {"mlp.0": 5.0}))),
    Origin("b-only-svd", "net", "b-only-svd", "asymlora", (("scaling", "rslora"),)),
    Origin("a-only", "net", "a-only", "asymlora", (("train_modules", ["classifier"]),)),
    Origin("embed-b-only", "embed", "b-only", "asymlora", (("train_modules", ["classifier"]),)),
    Origin("peft-lora", "net", "lora", "peft", (("rank_pattern", {"proj": 2}), ("train_modules", ["classifier"]))),
    Origin("peft-native-lora", "net", "lora", "peft-native", (("alpha_pattern", {"mlp.0": 5.0}),)),
    Origin("peft-native-b-only", "embed", "b-only", "peft-native", (("train_modules", ["classifier"]),)),
]
BY_NAME = {o.name: o for o in ORIGINS}
EXPECTED = "expected.safetensors"


def make_origin(origin: Origin, root: Path) -> Path:
    """Save ``origin`` under ``root/<name>/folder`` with its reference output; returns ``root/<name>``."""
    out = root / origin.name
    if (out / EXPECTED).exists():
        return out
    model = build(origin.base)
    config = asymlora.AdapterConfig.preset(origin.preset, rank=3, targets=TARGETS[family(origin.base)], seed=11,
                                           **dict(origin.options))
    asymlora.inject(model, config)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _, layer in asymlora.adapted_layers(model):
            for which in "AB":
                if layer.is_trainable(which):
                    t = layer.factor(which)
                    t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        if "classifier" in dict(origin.options).get("train_modules", []):
            model.classifier.bias.add_(0.5)
    folder = out / "folder"
    if origin.flavour == "asymlora":
        asymlora.save_adapter(model, folder, store_frozen=origin.store_frozen, extra={"task": "fuzz"})
    else:
        asymlora.export_peft(model, folder, base_model_name_or_path="fuzz/" + origin.base)
        if origin.flavour == "peft-native":
            edit.as_peft_native(folder)
    with torch.no_grad():
        save_file({"output": model(example_input(origin.base)).contiguous()}, str(out / EXPECTED))
    return out


@dataclass
class Case:
    index: int
    origin: str
    base: str  # the base model it is loaded onto
    mutation: str  # what was done, in words
    detectable: bool
    folder: Path | None = None


# ---- values an edit puts into a config field ----------------------------------------------------------

DEEP, BIG_FLOAT, LONG_INT = "__DEEP__", "__BIG_FLOAT__", "__LONG_INT__"
TEXT_TOKENS = {f'"{DEEP}"': "[" * 20000 + "]" * 20000, f'"{BIG_FLOAT}"': "1e400", f'"{LONG_INT}"': "9" * 5000}
NASTY = [None, "", "x", 0, -1, 1, 1.5, True, False, [], {}, 10 ** 30, 2 ** 22, 2 ** 63, 1e308, -1e-300,
         float("nan"), float("inf"), "(.|.)*Z", "(a+)+$", "{:>999999999}", "{0.__class__.__mro__}", "{}{}{}",
         "0-999999999999", "0-3,0-3", "Infinity", [[["deep"]]], {"zz": 1}, DEEP, BIG_FLOAT, LONG_INT, "\u2028",
         "layers.proj", "../../etc/passwd"]


def _similar(value: Any, rng: random.Random) -> Any:
    """A plausible edit of ``value`` (a clumsy user's, or one meant to slip through)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([value + 1, value - 1, value * 2, -value, 0, value + 10 ** 6])
    if isinstance(value, float):
        return rng.choice([value * (1 + 1e-6), value + 1, -value, value * 2, 0.0, value / 3])
    if isinstance(value, str):
        if not value:
            return "a"
        i = rng.randrange(len(value))
        return rng.choice([value[:i] + chr(ord(value[i]) ^ 1) + value[i + 1:], value + "x", value[:i],
                           value.upper(), value + ".0", value.replace("0", "1", 1)])
    if isinstance(value, list):
        if not value:
            return [0]
        return rng.choice([value[:-1], value + value[-1:], value[::-1], [value[0]] * len(value), value[1:]])
    if isinstance(value, dict):
        if not value:
            return {"zz": 1}
        keys = list(value)
        out = dict(value)
        k = rng.choice(keys)
        if rng.random() < 0.5:
            del out[k]
        else:
            out[k + "x"] = out.pop(k)
        return out
    return rng.choice(NASTY)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _get(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


def _field_edit(meta: Any, rng: random.Random) -> tuple[Any, str]:
    """Edit one randomly chosen field of the parsed config; returns (new config, description)."""
    path = rng.choice(_paths(meta)[1:] or [()])
    if not path:
        return rng.choice(NASTY), "config replaced"
    parent, key = _get(meta, path[:-1]), path[-1]
    old = parent[key]
    r = rng.random()
    if r < 0.15 and isinstance(parent, dict):
        del parent[key]
        return meta, f"deleted {'.'.join(map(str, path))}"
    if r < 0.22 and isinstance(parent, dict):
        parent[str(key) + "_extra"] = old
        return meta, f"added a field beside {'.'.join(map(str, path))}"
    new = rng.choice(NASTY) if r < 0.6 else _similar(old, rng)
    parent[key] = new
    return meta, f"{'.'.join(map(str, path))}: {str(old)[:30]} -> {str(new)[:30]}"


def _dump(meta: Any) -> str:
    text = json.dumps(meta, separators=(",", ":"))
    for token, raw in TEXT_TOKENS.items():
        text = text.replace(token, raw)
    return text


def _write_text(folder: Path, text: str | bytes) -> None:
    path = folder / edit.CONFIG
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


PEFT_UNDETECTABLE_FIELDS = {"lora_alpha", "alpha_pattern", "use_rslora"}


def _edit_field(folder: Path, origin: Origin, rng: random.Random) -> tuple[str, bool]:
    meta, what = _field_edit(edit.read_config(folder), rng)
    resigned = origin.flavour == "asymlora" and rng.random() < 0.6 and isinstance(meta, dict)
    _write_text(folder, _dump(meta))
    if resigned and all(t not in _dump(meta) for t in TEXT_TOKENS.values()):
        try:
            edit.resign(folder)  # the digest matches again: only the cross-checks can find the edit
            what += " (re-signed)"
        except ValueError:
            pass
    top = what.split(".")[0].split(":")[0].split(" ")[-1]
    detectable = not (origin.flavour == "peft-native" and top in PEFT_UNDETECTABLE_FIELDS)
    return what, detectable


def _edit_text(folder: Path, origin: Origin, rng: random.Random) -> tuple[str, bool]:
    text = (folder / edit.CONFIG).read_text()
    choice = rng.randrange(9)
    if choice == 0:  # a key written twice, the second time with another value
        meta = json.loads(text)
        key = rng.choice(list(meta))
        value = _similar(meta[key], rng)
        return _write_text(folder, text[:-1] + "," + json.dumps(key) + ":" + json.dumps(value) + "}") or \
            f"duplicate key {key}", True
    if choice == 1:  # a duplicate key deeper down
        meta = json.loads(text)
        dicts = [p for p in _paths(meta) if isinstance(_get(meta, p), dict) and _get(meta, p)]
        path = rng.choice(dicts)
        node = _get(meta, path)
        key = rng.choice(list(node))
        node["__DUP__"] = _similar(node[key], rng)
        return _write_text(folder, _dump(meta).replace('"__DUP__"', json.dumps(key))) or \
            f"duplicate key {key} in {'.'.join(map(str, path))}", True
    if choice == 2:
        return _write_text(folder, "[" * 200000 + "]" * 200000) or "deeply nested config", True
    if choice == 3:
        return _write_text(folder, rng.choice(["7", "null", '"x"', "[]", "{}", "", "true", "1e400", "NaN"])) or \
            "config is a bare value", True
    if choice == 4:
        return _write_text(folder, b"\xef\xbb\xbf" + text.encode()) or "BOM before the config", True
    if choice == 5:
        return _write_text(folder, text.encode()[:-2] + b"\xff\xfe}") or "invalid UTF-8", True
    if choice == 6:
        return _write_text(folder, text + " " * rng.randrange(1, 100) + "\n") or "trailing whitespace", True
    if choice == 7:
        return _write_text(folder, json.dumps(json.loads(text), indent=2, sort_keys=True)) or \
            "re-indented, keys sorted", True
    # a number written as a literal Python's json accepts but JSON does not
    meta = json.loads(text)
    numbers = [p for p in _paths(meta) if isinstance(_get(meta, p), (int, float)) and not isinstance(_get(meta, p), bool)]
    if not numbers:
        return _write_text(folder, text.replace("}", ',"x":NaN}', 1)) or "NaN literal", True
    path = rng.choice(numbers)
    _get(meta, path[:-1])[path[-1]] = rng.choice([BIG_FLOAT, LONG_INT, float("nan"), float("-inf")])
    return _write_text(folder, _dump(meta)) or f"non-finite or overlong number at {'.'.join(map(str, path))}", True


def _flip_bytes(path: Path, rng: random.Random, count: int) -> str:
    data = bytearray(path.read_bytes())
    spots = []
    for _ in range(count):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
        spots.append(i)
    path.write_bytes(bytes(data))
    return f"flipped bits at bytes {spots} of {path.name}"


def _header_length(path: Path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def _byte_edit(folder: Path, origin: Origin, rng: random.Random) -> tuple[str, bool]:
    cfg, weights = folder / edit.CONFIG, folder / edit.WEIGHTS[edit.flavour(folder)]
    peft = origin.flavour != "asymlora"
    choice = rng.randrange(6)
    if choice == 0:
        return _flip_bytes(cfg, rng, rng.randint(1, 3)), not (peft and origin.flavour == "peft-native")
    if choice == 1:
        n = rng.randrange(len(cfg.read_bytes()))
        cfg.write_bytes(cfg.read_bytes()[:n])
        return f"config truncated to {n} bytes", True
    if choice == 2:  # the tensor data of a PEFT folder is covered by no checksum
        in_data = False
        what = _flip_bytes(weights, rng, rng.randint(1, 3))
        in_data = all(int(s) >= _header_length(weights) for s in what.split("[")[1].split("]")[0].split(", "))
        return what, not (peft and in_data)
    if choice == 3:
        n = rng.randrange(len(weights.read_bytes()))
        weights.write_bytes(weights.read_bytes()[:n])
        return f"tensor file truncated to {n} bytes", True
    if choice == 4:  # flips, then the new sha256 put into the config ("fixing" the checksum error)
        what = _flip_bytes(weights, rng, 1)
        in_data = int(what.split("[")[1].split("]")[0]) >= _header_length(weights)
        if not peft:
            tensors_meta = weights.read_bytes()
            import hashlib
            edit.edit_config(folder, lambda m: m.__setitem__("weights_sha256", hashlib.sha256(tensors_meta).hexdigest()))
        return what + " and its sha256 re-written", not in_data
    weights.write_bytes(weights.read_bytes() + bytes(rng.randrange(1, 64)))
    return "bytes appended to the tensor file", not peft


DTYPES = [torch.float16, torch.bfloat16, torch.float64, torch.float32, torch.int32, torch.int8, torch.uint8,
          torch.bool, torch.complex64, torch.int64]


def _tensor_edit(folder: Path, origin: Origin, rng: random.Random) -> tuple[str, bool]:
    """A structural edit of the tensor file, re-written with a matching sha256 (asymlora)."""
    tensors, metadata = edit.read_tensors(folder)
    keys = sorted(tensors)
    key = rng.choice(keys)
    t = tensors[key]
    choice = rng.randrange(9)
    detectable = True
    if choice == 0 and len(keys) > 1:
        other = rng.choice([k for k in keys if k != key])
        detectable = tensors[key].shape != tensors[other].shape or tensors[key].dtype != tensors[other].dtype
        tensors[key], tensors[other] = tensors[other], tensors[key]
        what = f"swapped {key} and {other}"
    elif choice == 1:
        name = rng.choice([key + "x", key.replace("lora_A", "lora_C"), "train_modules.proj.weight",
                           "train_modules.classifier.weight", "layers.proj.lora_A", "layers.mlp.0.lora_B",
                           "base_model.model.proj.weight", "base_model.model.conv.lora_A.weight", "x"])
        if name in tensors:
            name += ".extra"
        tensors[name] = t.clone()
        what = f"extra tensor {name}"
    elif choice == 2:
        del tensors[key]
        what = f"removed {key}"
        if not tensors:
            tensors["x"] = torch.zeros(1)
    elif choice == 3:
        dtype = rng.choice([d for d in DTYPES if d != t.dtype])
        tensors[key] = t.to(dtype)
        what = f"{key} cast to {dtype}"
    elif choice == 4:
        shaped = [t.t() if t.dim() == 2 else t.flatten(), torch.cat([t, t[:1]]), t.flatten(),
                  t.unsqueeze(0), t[:-1] if t.shape[0] > 1 else torch.cat([t, t])]
        tensors[key] = rng.choice(shaped).contiguous()
        what = f"{key} reshaped to {tuple(tensors[key].shape)}"
        detectable = tuple(tensors[key].shape) != tuple(t.shape)
    elif choice == 5:
        bad = t.clone().float()
        bad.view(-1)[rng.randrange(bad.numel())] = rng.choice([float("nan"), float("inf"), -float("inf")])
        tensors[key] = bad.to(t.dtype)
        what = f"non-finite value in {key}"
    elif choice == 6:
        new = key.replace("mlp.0", "mlp.2") if "mlp.0" in key else key.replace("proj", "conv", 1)
        if new == key or new in tensors:
            new = key + ".renamed"
        tensors[new] = tensors.pop(key)
        what = f"renamed {key} to {new}"
    elif choice == 7:
        tensors[key] = t * (1 + 1e-3)  # other values: a different, well-formed adapter
        what = f"values of {key} scaled by 1.001"
        detectable = False
    else:
        tensors = {k: tensors[k] for k in reversed(keys)}  # only the order changes
        what = "tensors written in another order"
    edit.write_tensors(folder, tensors, metadata)
    return what + " (sha256 re-written)" * (origin.flavour == "asymlora"), detectable


def _file_edit(folder: Path, origin: Origin, rng: random.Random, root: Path) -> tuple[str, bool]:
    cfg, weights = folder / edit.CONFIG, folder / edit.WEIGHTS[edit.flavour(folder)]
    choice = rng.randrange(6)
    if choice == 0:
        cfg.unlink()
        return "config removed", True
    if choice == 1:
        weights.unlink()
        return "tensor file removed", True
    if choice == 2:
        (folder / "README.md").write_text("notes")
        (folder / ".adapter.safetensors.tmp-123").write_bytes(b"junk")
        return "unrelated files added", True
    others = [o for o in ORIGINS if o.name != origin.name and (o.flavour == "asymlora") == (origin.flavour == "asymlora")]
    other = make_origin(rng.choice(others), root) / "folder"
    if choice == 3:
        shutil.copy(other / cfg.name, cfg)
        return f"config from {other.parent.name}", True
    if choice == 4:
        shutil.copy(other / weights.name, weights)
        return f"tensor file from {other.parent.name}", origin.flavour != "peft-native"
    shutil.copy(other / weights.name, weights)
    if origin.flavour == "asymlora":
        import hashlib
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        edit.edit_config(folder, lambda m: m.__setitem__("weights_sha256", digest))
    return f"tensor file from {other.parent.name}, sha256 re-written", origin.flavour != "peft-native"


OTHER_BASES = {"net": ["other-wide", "other-labels", "embed"], "embed": ["net", "other-wide"]}


def make_case(index: int, seed: int, root: Path, work: Path) -> Case:
    """Case ``index`` of run ``seed``: its folder under ``work``, built from the origins under ``root``."""
    rng = random.Random(f"{seed}:{index}")
    origin = rng.choice(ORIGINS)
    source = make_origin(origin, root) / "folder"
    folder = work / f"case-{index}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, folder)
    base = origin.base
    kinds: list[tuple[float, Callable[[], tuple[str, bool]]]] = [
        (0.30, lambda: _edit_field(folder, origin, rng)),
        (0.12, lambda: _edit_text(folder, origin, rng)),
        (0.18, lambda: _byte_edit(folder, origin, rng)),
        (0.22, lambda: _tensor_edit(folder, origin, rng)),
        (0.08, lambda: _file_edit(folder, origin, rng, root)),
    ]
    r = rng.random()
    for weight, make in kinds:
        if r < weight:
            what, detectable = make()
            break
        r -= weight
    else:
        if r < 0.06:  # loaded onto another base model
            if origin.preset == "b-only-svd" and rng.random() < 0.5:
                base = "other-weights"  # its frozen A is the SVD of other weights
            else:
                trains_head = "classifier" in dict(origin.options).get("train_modules", [])
                # a base with another head is another base model only if the adapter trains the head
                base = rng.choice([b for b in OTHER_BASES[family(origin.base)] if trains_head or b != "other-labels"])
            what, detectable = f"loaded onto {base}", True
        else:
            what, detectable = "unchanged (control)", True
    return Case(index, origin.name, base, what, detectable, folder)
