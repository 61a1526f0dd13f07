"""A Hugging Face PEFT LoRA folder, read once and checked (without importing peft).

PEFT's format: ``adapter_config.json`` (``peft_type: "LORA"``, ``r``, ``lora_alpha``, ``target_modules``,
``rank_pattern``, ``alpha_pattern``, ``use_rslora``, ``modules_to_save`` …) and
``adapter_model.safetensors`` with, per adapted module, two tensors in the layout of its layer type
(:attr:`asymlora.layers.AdaptedLayer.peft_keys`: ``base_model.model.<module>.lora_A.weight`` …, or
``lora_embedding_A`` … for an embedding), and ``base_model.model.<module>.<param>`` for the
parameters of modules_to_save. Scaling is ``lora_alpha / r`` (or ``/√r``).

A PEFT folder carries no checksum, so :class:`PeftFolder` checks what can be checked: strict JSON,
every field's type, no PEFT feature that changes the computation beyond plain B·A LoRA, every
tensor a float with finite values, factors in pairs, modules that ``target_modules`` names. The shapes
against the config's ranks and against the base model are checked by :func:`asymlora.import_peft`.
An adapter exported by asymlora also records the sha256 of its config in the tensor file's header, so
an edited config, or a config and tensor file from two exports, is found.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from .adapter_file import DIGEST_KEY, DTYPE_NAMES, CheckpointError, header_metadata
from .jsonfile import JsonError, loads_strict
from .layers import LAYER_TYPES
from .names import check_pattern, name_matches, peft_pattern_matches

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."

# Fields that do not change what a loaded LoRA computes (informational, or about initialisation only,
# which the loaded tensors replace). Any other field must be absent, null, false or empty.
HARMLESS = {"peft_type", "task_type", "base_model_name_or_path", "revision", "peft_version", "auto_mapping",
            "inference_mode", "init_lora_weights", "loftq_config", "eva_config", "corda_config", "lora_ga_config",
            "megatron_core", "qalora_group_size", "layers_pattern", "layers_to_transform", "exclude_modules",
            "r", "lora_alpha", "target_modules", "rank_pattern", "alpha_pattern", "use_rslora", "lora_dropout",
            "fan_in_fan_out", "bias", "modules_to_save"}


INFORMATIONAL = {"task_type", "base_model_name_or_path", "revision", "peft_version", "auto_mapping", "inference_mode"}


def peft_config_digest(raw: dict) -> str:
    """sha256 of a PEFT config as canonical JSON, leaving out the informational fields (which users edit)."""
    covered = {k: v for k, v in raw.items() if k not in INFORMATIONAL}
    return hashlib.sha256(json.dumps(covered, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def is_peft_folder(path: Path) -> bool:
    """Whether ``path`` holds a PEFT config (``peft_type`` in its adapter_config.json)."""
    try:
        meta = json.loads((Path(path) / PEFT_CONFIG).read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(meta, dict) and "peft_type" in meta


def _factor_pattern() -> re.Pattern:
    """Tensor names of factors: ``[base_model.model.]<module>.<suffix>`` with PEFT's optional adapter-name part."""
    alternatives = []
    for cls in LAYER_TYPES:
        for which, suffix in cls.peft_keys.items():
            head, dot, tail = suffix.partition(".")
            alternatives.append(f"(?P<{head}>{re.escape(head)}(?:\\.[^.]+)?{re.escape(dot + tail)})")
    return re.compile(rf"^(?:{re.escape(PREFIX)})?(?P<module>.+?)\.(?:{'|'.join(dict.fromkeys(alternatives))})$")


def _which(match: re.Match) -> str:
    group = next(k for k, v in match.groupdict().items() if k != "module" and v is not None)
    return group[-1]  # lora_A / lora_embedding_B → "A" / "B"


@dataclass
class PeftConfig:
    """The fields of a PEFT LoRA config that asymlora uses, checked."""

    r: int
    lora_alpha: float
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]
    use_rslora: bool
    lora_dropout: float
    modules_to_save: tuple[str, ...]
    target_modules: str | tuple[str, ...] | None
    exclude_modules: str | tuple[str, ...] | None

    def rank_of(self, name: str) -> int:
        return next((v for k, v in self.rank_pattern.items() if peft_pattern_matches(name, k)), self.r)

    def alpha_of(self, name: str) -> float:
        return next((v for k, v in self.alpha_pattern.items() if peft_pattern_matches(name, k)), self.lora_alpha)

    def targets(self, name: str) -> bool:
        """Whether PEFT would adapt module ``name`` (``target_modules`` and ``exclude_modules``)."""
        def hit(spec):
            if isinstance(spec, str):
                return re.fullmatch(spec, name) is not None
            return any(name_matches(name, t) for t in spec)
        if self.exclude_modules and hit(self.exclude_modules):
            return False
        return self.target_modules is None or hit(self.target_modules)


class PeftFolder:
    """A PEFT LoRA folder: ``config`` (:class:`PeftConfig`), ``factors`` (``{module: {"A", "B"}}`` in
    PEFT's layout) and ``others`` (``{parameter name: tensor}`` of modules_to_save)."""

    def __init__(self, path: Path, config: PeftConfig, factors: dict, others: dict) -> None:
        self.path, self.config, self.factors, self.others = path, config, factors, others

    @classmethod
    def open(cls, path) -> "PeftFolder":
        path = Path(path)
        raw = _read_config(path)
        config = _parse_config(raw, path / PEFT_CONFIG)
        data = _read_weights(path)
        try:
            tensors = load_safetensors(data)
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{path / PEFT_WEIGHTS} cannot be read ({err}); the file is corrupt") from None
        header = header_metadata(data, path / PEFT_WEIGHTS)
        if DIGEST_KEY in header and header[DIGEST_KEY] != peft_config_digest(raw):
            raise CheckpointError(f"{path / PEFT_CONFIG} is not the config its tensor file was exported with (edited, "
                                  "or the two files come from two exports); export the adapter again")
        factors, others = _split(tensors, config, path / PEFT_WEIGHTS)
        return cls(path, config, factors, others)


def _read_config(path: Path) -> dict:
    cfg_file = path / PEFT_CONFIG
    try:
        text = cfg_file.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} is not a PEFT adapter folder: {PEFT_CONFIG} is missing") from None
    except OSError as err:
        raise CheckpointError(f"{cfg_file} cannot be read ({err})") from None
    try:
        raw = loads_strict(text)
    except JsonError as err:
        raise CheckpointError(f"{cfg_file} is corrupt: {err}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{cfg_file} is not a PEFT adapter config (not a JSON object)")
    if raw.get("peft_type") != "LORA":
        raise CheckpointError(f"{cfg_file}: peft_type is {str(raw.get('peft_type'))[:40]!r}; only LoRA adapters can "
                              "be imported")
    return raw


def _bad(cfg_file: Path, field: str, value: Any, wanted: str) -> CheckpointError:
    return CheckpointError(f"{cfg_file}: {field!r} must be {wanted}, got {str(value)[:60]!r}")


def _parse_config(raw: dict, cfg_file: Path) -> PeftConfig:
    for field, value in raw.items():
        if field not in HARMLESS and value not in (None, False, {}, [], 0, ""):
            raise CheckpointError(f"{cfg_file}: {field}={str(value)[:60]} is a PEFT feature beyond plain B·A LoRA, "
                                  "which asymlora does not implement; it cannot be imported")
    if raw.get("bias", "none") != "none":
        raise CheckpointError(f"{cfg_file}: bias={str(raw['bias'])[:20]!r} trains base biases; only bias='none' is "
                              "supported")

    def number(field, default, ok, wanted, integer=False):
        v = raw.get(field, default)
        good = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not good or not math.isfinite(v) or not ok(v):
            raise _bad(cfg_file, field, v, wanted)
        return v

    def flag(field):
        v = raw.get(field, False)
        if not isinstance(v, bool):
            raise _bad(cfg_file, field, v, "true or false")
        return v

    def names(field):
        v = raw.get(field)
        if v is None:
            return None
        if isinstance(v, str):
            try:
                return check_pattern(v, field)
            except ValueError as err:
                raise CheckpointError(f"{cfg_file}: {err}") from None
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise _bad(cfg_file, field, v, "a list of module names, a regular expression or null")
        return tuple(v)

    def patterns(field, ok, wanted):
        v = raw.get(field) or {}
        if not isinstance(v, dict):
            raise _bad(cfg_file, field, v, "an object mapping module patterns to values")
        for key, value in v.items():
            try:
                check_pattern(key, f"{field} key")
            except ValueError as err:
                raise CheckpointError(f"{cfg_file}: {err}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                raise _bad(cfg_file, f"{field}[{key!r}]", value, wanted)
        return dict(v)

    r = number("r", 8, lambda v: v >= 1, "an integer ≥ 1", integer=True)
    alpha = number("lora_alpha", r, lambda v: v > 0, "a finite number > 0")
    dropout = number("lora_dropout", 0.0, lambda v: 0 <= v < 1, "a number in [0, 1)")
    flag("fan_in_fan_out")  # PEFT sets it per layer type whatever the file says
    to_save = names("modules_to_save")
    if isinstance(to_save, str):
        raise _bad(cfg_file, "modules_to_save", to_save, "a list of module names or null")
    return PeftConfig(
        r=r, lora_alpha=float(alpha), use_rslora=flag("use_rslora"), lora_dropout=float(dropout),
        rank_pattern=patterns("rank_pattern", lambda v: isinstance(v, int) and v >= 1, "an integer ≥ 1"),
        alpha_pattern=patterns("alpha_pattern", lambda v: v > 0, "a finite number > 0"),
        modules_to_save=tuple(to_save or ()), target_modules=names("target_modules"),
        exclude_modules=names("exclude_modules"))


def _read_weights(path: Path) -> bytes:
    weights = path / PEFT_WEIGHTS
    try:
        return weights.read_bytes()
    except FileNotFoundError:
        if (path / "adapter_model.bin").is_file():
            raise CheckpointError(f"{path} holds a pickled adapter_model.bin, which asymlora never unpickles; "
                                  "convert it to safetensors with PEFT (save_pretrained(safe_serialization=True))") from None
        raise CheckpointError(f"{weights} is missing") from None
    except OSError as err:
        raise CheckpointError(f"{weights} cannot be read ({err})") from None


def _in_saved_module(param: str, entries) -> bool:
    """Whether parameter ``param`` lies in a module that a modules_to_save entry names (exact or dotted suffix)."""
    parts = param.split(".")
    return any(name_matches(".".join(parts[:k]), m) for k in range(1, len(parts)) for m in entries)


def _split(tensors: dict[str, torch.Tensor], config: PeftConfig, where: Path) -> tuple[dict, dict]:
    """Factors by module (both present, a targeted module) and the modules_to_save parameters."""
    factors: dict[str, dict[str, torch.Tensor]] = {}
    others: dict[str, torch.Tensor] = {}
    pattern = _factor_pattern()
    for key, value in tensors.items():
        if value.dtype not in DTYPE_NAMES:
            raise CheckpointError(f"{where}: tensor {key!r} has dtype {value.dtype}; LoRA tensors are float16, "
                                  "bfloat16, float32 or float64")
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{where}: tensor {key!r} holds non-finite values (NaN or ±inf)")
        m = pattern.match(key)
        if m:
            pair = factors.setdefault(m.group("module"), {})
            which = _which(m)
            if which in pair:
                raise CheckpointError(f"{where}: module {m.group('module')!r} has two lora_{which} tensors")
            pair[which] = value
            continue
        name = key[len(PREFIX):] if key.startswith(PREFIX) else key
        name = name.replace(".modules_to_save.default.", ".")
        if not _in_saved_module(name, config.modules_to_save):
            raise CheckpointError(f"{where}: tensor {key!r} is neither a LoRA factor nor a parameter of "
                                  f"modules_to_save {list(config.modules_to_save)}")
        if name in others:
            raise CheckpointError(f"{where}: parameter {name!r} appears twice")
        others[name] = value
    for name, pair in factors.items():
        if set(pair) != {"A", "B"}:
            raise CheckpointError(f"{where}: module {name!r} has lora_{''.join(pair)} but not both factors")
        if not config.targets(name):
            raise CheckpointError(f"{where}: module {name!r} has LoRA tensors but the config's target_modules / "
                                  "exclude_modules do not adapt it")
    if not factors:
        raise CheckpointError(f"{where}: the PEFT adapter holds no LoRA factor tensors")
    _check_ranks(factors, config, where)
    _one_dtype(where, "LoRA factor", {f"{m}.lora_{w}": t for m, pair in factors.items() for w, t in pair.items()})
    _one_dtype(where, "modules_to_save", others)
    return factors, others


def _check_ranks(factors: dict[str, dict[str, torch.Tensor]], config: PeftConfig, where: Path) -> None:
    """Each factor's rank (``lora_A``'s first and ``lora_B``'s second dimension, in every layer type's
    layout) is the one the config gives its module — checked before any layer of that rank is built."""
    for name, pair in factors.items():
        r = config.rank_of(name)
        a, b = pair["A"], pair["B"]
        if a.dim() < 2 or b.dim() < 2 or a.shape[0] != r or b.shape[1] != r:
            raise CheckpointError(f"{where}: module {name!r} has lora_A of shape {tuple(a.shape)} and lora_B of shape "
                                  f"{tuple(b.shape)}, but the config gives it rank {r} (r / rank_pattern): the config "
                                  "or the tensor file was edited")


def _one_dtype(where: Path, what: str, tensors: dict[str, torch.Tensor]) -> None:
    """PEFT saves all factors of an adapter in one dtype (and the modules_to_save parameters in one):
    a tensor of another dtype than its fellows was cast after the save, and would load rounded."""
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) > 1:
        odd = min(dtypes, key=lambda d: sum(t.dtype == d for t in tensors.values()))
        names = sorted(k for k, t in tensors.items() if t.dtype == odd)
        raise CheckpointError(f"{where}: the {what} tensors have mixed dtypes ({sorted(map(str, dtypes))}); "
                              f"{names[:3]} are {odd}, the others not: the file was edited — export it again")
