"""The asymlora adapter folder, and :class:`AdapterFolder`: one reader that opens it once and checks it.

A folder holds ``adapter_config.json`` and ``adapter.safetensors``. The config (format 3) is

* ``format`` (``"asymlora-adapter"``), ``format_version`` (3);
* ``config``: the :class:`~asymlora.config.AdapterConfig`; ``notation``: its paper name;
* ``train_modules``: the qualified names of the modules trained in full, and ``train_params``:
  ``{parameter name: {"dtype", "shape"}}`` of each of their parameters;
* ``layer_groups``: the adapted layers as groups of alike layers (:mod:`asymlora.layer_groups`):
  shapes, rank, scale and, per factor, whether it is ``stored`` (then with its ``dtype``) or
  regenerated from its seed (then with the summed ``fingerprint`` of the group);
* ``weights_sha256`` (of the tensor file), ``created_by`` (versions), ``extra`` (free-form).

The tensor file holds exactly ``layers.<layer>.lora_A|lora_B`` for each stored factor and
``train_modules.<parameter>`` for each train parameter, and its header records the sha256 of the
config (:func:`config_digest`: everything but ``weights_sha256`` and ``extra``), so each file pins
the other. Formats 1 (one entry per layer) and 2 (groups, no dtypes, no binding) are still read.

Opening a folder reads each file once, hashes the tensor file once, and checks, before any tensor
reaches a model: the JSON is strict (no duplicate keys, no NaN), every field has its type, the
fields agree with each other (a trained factor is stored, a regenerated one has a finite fingerprint,
scales follow from alpha and rank, ranks from the config), and the tensors are exactly those the
config names, with its shapes and dtypes and finite values. Whatever fails is a
:class:`CheckpointError` that names the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .config import AdapterConfig, scale_for
from .init import factor_seed, fingerprint, fingerprints_match, init_factor
from .jsonfile import JsonError, loads_strict
from .layer_groups import checks_from_layers, expand_groups, sum_fingerprints
from .names import name_matches

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
FORMAT = "asymlora-adapter"
FORMAT_VERSION = 3  # 3: dtypes, train parameters and the config digest; 2: layer groups; 1: one entry per layer
DIGEST_KEY = "asymlora_config_sha256"  # in the tensor file's header
LAYER_PREFIX = "layers."
TRAIN_PREFIX = "train_modules."
DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
MAX_DIM = 1 << 24  # a layer side no model has (16.7 M); checked before anything is allocated
MAX_REGENERATED = 1 << 27  # elements of one factor regenerated without a base model to check its shape

_TOP_KEYS = {1: {"format", "format_version", "config", "notation", "train_modules", "layers", "weights_sha256",
                 "created_by", "extra"}}
_TOP_KEYS[2] = _TOP_KEYS[1] - {"layers"} | {"layer_groups"}
_TOP_KEYS[3] = _TOP_KEYS[2] | {"train_params"}
_REQUIRED = {1: {"format", "format_version", "config", "layers", "weights_sha256"},
             2: {"format", "format_version", "config", "layer_groups", "weights_sha256"}}
_REQUIRED[3] = _TOP_KEYS[3]
_ENTRY_KEYS = {"d_in", "d_out", "rank", "scale", "A", "B"}
_FACTOR_KEYS = {"stored", "seed", "regenerable", "fingerprint"}
_FACTOR_KEYS_V1 = _FACTOR_KEYS | {"init", "trainable"}


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, edited, or does not fit the model it is loaded onto."""


def factor_key(layer: str, which: str) -> str:
    """The tensor name of factor ``which`` of ``layer`` in the tensor file."""
    return f"{LAYER_PREFIX}{layer}.lora_{which}"


def train_key(param: str) -> str:
    """The tensor name of train parameter ``param`` (a qualified parameter name) in the tensor file."""
    return f"{TRAIN_PREFIX}{param}"


def config_digest(meta: Mapping[str, Any]) -> str:
    """sha256 of the config as canonical JSON, leaving out ``weights_sha256`` and ``extra``."""
    covered = {k: v for k, v in meta.items() if k not in ("weights_sha256", "extra")}
    text = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def in_modules(param: str, modules) -> bool:
    """Whether parameter ``param`` belongs to one of the (qualified) ``modules``."""
    return any(param.startswith(m + ".") for m in modules)


@dataclass(frozen=True)
class FactorEntry:
    """One factor of one layer as the config describes it."""

    init: str
    trainable: bool
    stored: bool
    seed: int
    regenerable: bool
    dtype: str | None  # of a stored factor (format 3)


@dataclass(frozen=True)
class LayerEntry:
    """One adapted layer as the config describes it."""

    name: str
    d_in: int
    d_out: int
    rank: int
    scale: float
    A: FactorEntry
    B: FactorEntry
    kind: str | None = None  # written by early format-1 files

    def factor(self, which: str) -> FactorEntry:
        return self.A if which == "A" else self.B

    def shape(self, which: str) -> tuple[int, int]:
        return (self.rank, self.d_in) if which == "A" else (self.d_out, self.rank)


@dataclass(frozen=True)
class FingerprintCheck:
    """The summed fingerprint of one factor over a group of layers (one layer in format 1)."""

    factor: str
    layers: tuple[str, ...]
    fingerprint: tuple[float, ...]
    label: str


class AdapterFolder:
    """An asymlora adapter folder, read once and checked (see the module docstring).

    Attributes: ``path``, ``format_version``, ``config`` (:class:`AdapterConfig`), ``layers``
    (``{name: LayerEntry}`` in file order), ``train_modules`` (qualified names), ``train_tensors``
    (``{parameter name: tensor}``), ``checks`` (fingerprints of regenerated factors), ``created_by``,
    ``extra``, ``meta`` (the parsed config file). :meth:`stored` gives a stored factor.
    """

    def __init__(self, path: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.path = path
        self.meta = meta
        self.format_version: int = meta["format_version"]
        self.config = _config(meta, self._where)
        self.created_by = meta.get("created_by") or {}
        self.extra = meta.get("extra") or {}
        self.train_modules = _train_modules(meta, self.config, self._where)
        raw_layers, raw_checks = _layer_table(meta, self._where)
        self.layers = {name: _layer_entry(name, raw, self.config, self.format_version, self._where)
                       for name, raw in raw_layers.items()}
        self.checks = [_check(c, self._where) for c in raw_checks]
        self._cross_check()
        self._factor_tensors, self.train_tensors = self._split_tensors(tensors)

    # ---- opening --------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> "AdapterFolder":
        """Read and check the folder at ``path``; :class:`CheckpointError` if anything is wrong."""
        path = Path(path)
        meta = read_config(path)
        data = _read_weights(path, meta)
        try:
            tensors = load_safetensors(data)
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{path / WEIGHTS_NAME} cannot be read ({err}); re-save the adapter") from None
        if meta["format_version"] >= 3:
            _check_digest(path, meta, data)
        return cls(path, meta, tensors)

    @property
    def _where(self) -> str:
        return str(self.path / CONFIG_NAME)

    # ---- what it holds --------------------------------------------------------------------------
    def stored(self, name: str, which: str) -> torch.Tensor | None:
        """The stored factor ``which`` of layer ``name`` (matrix layout, the file's dtype), or None."""
        return self._factor_tensors.get(factor_key(name, which))

    def scales(self) -> dict[str, float]:
        return {name: entry.scale for name, entry in self.layers.items()}

    def describe_versions(self) -> str:
        v = self.created_by
        return ", ".join(f"{k} {v[k]}" for k in sorted(v)) if v else "unknown versions"

    def check_regenerated(self, factor_of: Callable[[str, str], torch.Tensor]) -> None:
        """Check every regenerated frozen factor against the fingerprints saved with it.

        ``factor_of(layer name, "A"|"B")`` gives the factor as regenerated here. A check covers one
        layer (format 1) or a group of alike layers, whose fingerprints are summed (formats 2, 3).
        """
        for check in self.checks:
            actual = sum_fingerprints([fingerprint(factor_of(name, check.factor)) for name in check.layers])
            if not fingerprints_match(list(check.fingerprint), actual):
                which = check.factor
                init = self.layers[check.layers[0]].factor(which).init
                raise CheckpointError(
                    f"{check.label}: the frozen factor {which} "
                    f"({'input projection' if which == 'A' else 'output projection'}, init {init!r}) regenerated "
                    f"from its seed here differs from the one the adapter was trained with (written by "
                    f"{self.describe_versions()}). The random generator or the base weights differ. To recover: "
                    "load it with the versions that wrote it and re-save with "
                    "asymlora.save_adapter(model, path, store_frozen=True), which stores the matrix itself.")

    # ---- checks ---------------------------------------------------------------------------------
    def _cross_check(self) -> None:
        """Fields that must agree with each other (the config, the layer table, the train modules)."""
        cfg, where = self.config, self._where
        if not self.layers:
            raise CheckpointError(f"{where}: the adapter has no layers; re-save the adapter")
        ranks = {cfg.rank, *cfg.rank_pattern.values()}
        checked = {(c.factor, n) for c in self.checks for n in c.layers}
        for name, entry in self.layers.items():
            if in_modules(name, self.train_modules) or name in self.train_modules:
                raise CheckpointError(f"{where}: layer {name!r} lies inside a module trained in full "
                                      f"({list(self.train_modules)}); re-save the adapter")
            if entry.rank not in ranks:
                raise CheckpointError(f"{where}: layer {name!r} has rank {entry.rank}, which neither the config's "
                                      f"rank {cfg.rank} nor its rank_pattern gives")
            alphas = {cfg.alpha_for(entry.rank), *cfg.alpha_pattern.values()}
            if entry.scale not in {scale_for(a, entry.rank, cfg.scaling) for a in alphas}:
                raise CheckpointError(f"{where}: layer {name!r} has scale {entry.scale}, which no alpha of the "
                                      f"config ({sorted(alphas)}, scaling {cfg.scaling!r}) gives at rank {entry.rank}")
            for which in "AB":
                f = entry.factor(which)
                if not f.stored and (which, name) not in checked:
                    raise CheckpointError(f"{where}: layer {name!r} factor {which} is regenerated from its seed but "
                                          "has no fingerprint to check it against; re-save the adapter")
        for check in self.checks:
            for name in check.layers:
                if self.layers[name].factor(check.factor).stored and self.format_version >= 2:
                    raise CheckpointError(f"{where}: {check.label}: a fingerprint for the stored factor "
                                          f"{check.factor}; stored factors are checked by the file's sha256")

    def _split_tensors(self, tensors: dict[str, torch.Tensor]) -> tuple[dict, dict]:
        """The factor and train tensors, after checking they are exactly those the config names."""
        where = self.path / WEIGHTS_NAME
        expected: dict[str, tuple[tuple[int, ...] | None, str | None]] = {}
        for name, entry in self.layers.items():
            for which in "AB":
                f = entry.factor(which)
                if f.stored:
                    expected[factor_key(name, which)] = (entry.shape(which), f.dtype)
        params = _train_params(self.meta, self.train_modules, self._where) if self.format_version >= 3 else None
        if params is not None:
            for pname, (shape, dtype) in params.items():
                expected[train_key(pname)] = (shape, dtype)
        factors, train = {}, {}
        for key, value in tensors.items():
            legacy_train = params is None and key.startswith(TRAIN_PREFIX)
            if key not in expected and not legacy_train:
                raise CheckpointError(f"{where} holds tensor {key!r}, which its config does not name: the file "
                                      "was edited or belongs to another adapter; re-save the adapter")
            if legacy_train and not in_modules(key[len(TRAIN_PREFIX):], self.train_modules):
                raise CheckpointError(f"{where} holds tensor {key!r}, which belongs to none of the train modules "
                                      f"{list(self.train_modules)}; re-save the adapter")
            shape, dtype = expected.get(key, (None, None))
            _check_tensor(where, key, value, shape, dtype)
            if key.startswith(TRAIN_PREFIX):
                train[key[len(TRAIN_PREFIX):]] = value
            else:
                factors[key] = value
        missing = sorted(set(expected) - set(tensors))
        if missing:
            raise CheckpointError(f"{where} lacks the tensor(s) {missing[:5]} its config names; the checkpoint is "
                                  "incomplete or edited — re-save the adapter")
        return factors, train

    # ---- factors without a model ----------------------------------------------------------------
    def factors(self, weight_of: Callable[[str, LayerEntry], torch.Tensor | None] | None = None
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{layer: (A, B)}`` in matrix layout (float32, CPU): stored factors as saved, the others
        regenerated from their seeds (on the CPU, in float64, then cast) and checked.

        ``weight_of(name, entry)`` gives W0 (d_out × d_in) of a layer, needed only by an ``"svd"``
        regenerated factor; without it such a factor is an error.
        """
        from_init: dict[tuple[str, str], torch.Tensor] = {}
        out = {}
        for name, entry in self.layers.items():
            pair = []
            for which in "AB":
                info = entry.factor(which)
                if info.stored:
                    pair.append(self.stored(name, which).float())
                    continue
                pair.append(self._regenerate(name, entry, which, weight_of).float())
                from_init[(name, which)] = pair[-1]
            out[name] = (pair[0], pair[1])
        self.check_regenerated(lambda name, which: from_init[(name, which)])
        return out

    def _regenerate(self, name: str, entry: LayerEntry, which: str, weight_of) -> torch.Tensor:
        info, shape = entry.factor(which), entry.shape(which)
        if shape[0] * shape[1] > MAX_REGENERATED:
            raise CheckpointError(f"{self._where}: layer {name!r} factor {which} would be a {shape[0]}×{shape[1]} "
                                  "matrix; pass the base model to check the layer's size first")
        w0 = None
        if info.init == "svd":
            w0 = weight_of(name, entry) if weight_of is not None else None
            if w0 is None:
                raise CheckpointError(f"{name}: factor {which} is the SVD of the base weight; pass the base model: "
                                      "read_factors(path, base_model=...), or --base-model on the command line")
        return init_factor(info.init, which, shape, seed=info.seed, base_weight=w0)


# ---- reading the two files ---------------------------------------------------------------------------

def read_config(path: Path) -> dict[str, Any]:
    """The parsed, type-checked top level of ``adapter_config.json`` (layer entries are checked later)."""
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} is not an asymlora adapter folder: {CONFIG_NAME} is missing")
    try:
        meta = loads_strict(cfg_file.read_bytes())
    except JsonError as err:
        raise CheckpointError(f"{cfg_file} is corrupt ({err}); re-save the adapter") from None
    except OSError as err:
        raise CheckpointError(f"{cfg_file} cannot be read ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        hint = " (it looks like a PEFT adapter: use asymlora.import_peft)" if isinstance(meta, dict) and "peft_type" in meta else ""
        raise CheckpointError(f"{cfg_file} is not an asymlora adapter config{hint}")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{cfg_file}: format_version must be an integer ≥ 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{cfg_file} has format version {version}, newer than this asymlora reads "
                              f"({FORMAT_VERSION}); upgrade asymlora")
    unknown = sorted(set(meta) - _TOP_KEYS[version])
    missing = sorted(_REQUIRED[version] - set(meta))
    if unknown or missing:
        raise CheckpointError(f"{cfg_file}: " + (f"unknown fields {unknown}" if unknown else f"missing fields {missing}")
                              + f" for format {version}; the file was edited — re-save the adapter")
    sha = meta["weights_sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise CheckpointError(f"{cfg_file}: weights_sha256 must be 64 hex digits, got {str(sha)[:70]!r}")
    created = meta.get("created_by", {})
    if not isinstance(created, dict) or not all(isinstance(v, str) for v in created.values()):
        raise CheckpointError(f"{cfg_file}: created_by must map library names to version strings")
    if not isinstance(meta.get("notation", ""), str):
        raise CheckpointError(f"{cfg_file}: notation must be a string")
    return meta


def backup_name(sha: str) -> str:
    """The name a re-save gives the previous tensor file until the new config is in place."""
    return f".{WEIGHTS_NAME}.prev-{sha[:16]}"


def _read_weights(path: Path, meta: dict[str, Any]) -> bytes:
    """The tensor file's bytes, read once and checked against the config's sha256.

    If a re-save was interrupted after the new tensor file replaced the old one but before the new
    config did, the old tensor file is still there under :func:`backup_name`: it is the one read.
    """
    expected = meta["weights_sha256"]
    weights = path / WEIGHTS_NAME
    candidates = [weights, path / backup_name(expected)]
    actual = None
    for candidate in candidates:
        try:
            data = candidate.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise CheckpointError(f"{candidate} cannot be read ({err})") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest == expected:
            return data
        actual = actual or digest
    if actual is None:
        raise CheckpointError(f"{weights} is missing; the checkpoint is incomplete — re-save the adapter")
    raise CheckpointError(f"{weights} does not match its config (sha256 {actual[:12]}… ≠ {expected[:12]}…): the file "
                          "is corrupt or from another save. Re-save the adapter, or restore both files from the same save.")


def _check_digest(path: Path, meta: dict[str, Any], data: bytes) -> None:
    header = header_metadata(data, path / WEIGHTS_NAME)
    try:
        digest = config_digest(meta)
    except ValueError as err:
        raise CheckpointError(f"{path / CONFIG_NAME}: {err}") from None
    if header.get(DIGEST_KEY) != digest:
        raise CheckpointError(f"{path / CONFIG_NAME} does not match the config its tensor file was saved with: the "
                              "config was edited after the save. Restore it from the save, or re-save the adapter.")


def serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """``safetensors.torch.save`` with the header's metadata in sorted order, so that the same tensors and
    metadata always give the same bytes (safetensors writes the metadata map in a random order)."""
    data = save_safetensors(tensors, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:  # cannot happen for a reordering; keep safetensors' own bytes
        return data
    return data[:8] + text.ljust(n) + data[8 + n:]


def header_metadata(data: bytes, where: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (8-byte little-endian length, then a JSON header)."""
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 <= n <= len(data) - 8:
        raise CheckpointError(f"{where} is truncated or not a safetensors file")
    try:
        header = loads_strict(data[8:8 + n])
    except JsonError as err:
        raise CheckpointError(f"{where}: its header is corrupt ({err})") from None
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    return meta if isinstance(meta, dict) else {}


# ---- fields ---------------------------------------------------------------------------------------------

def _is_dtype(value: Any) -> bool:
    """Whether a config field names one of the safetensors dtypes (a list or dict there is not hashable)."""
    return isinstance(value, str) and value in DTYPES


def _config(meta: dict[str, Any], where: str) -> AdapterConfig:
    try:
        return AdapterConfig.from_dict(meta["config"])
    except ValueError as err:
        raise CheckpointError(f"{where}: config: {err}") from None


def _train_modules(meta: dict[str, Any], config: AdapterConfig, where: str) -> tuple[str, ...]:
    modules = meta.get("train_modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
        raise CheckpointError(f"{where}: train_modules must be a list of module names, got {str(modules)[:80]}")
    if len(set(modules)) != len(modules):
        raise CheckpointError(f"{where}: train_modules names a module twice")
    for m in modules:  # that each entry found these modules is checked against the model at load
        if not any(name_matches(m, p) for p in config.train_modules):
            raise CheckpointError(f"{where}: train module {m!r} matches none of the config's train_modules "
                                  f"{list(config.train_modules)}")
    return tuple(modules)


def _train_params(meta: dict[str, Any], modules: tuple[str, ...], where: str) -> dict[str, tuple[tuple[int, ...], str]]:
    params = meta["train_params"]
    if not isinstance(params, dict):
        raise CheckpointError(f"{where}: train_params must map parameter names to dtype and shape")
    out = {}
    for pname, info in params.items():
        if not in_modules(pname, modules):
            raise CheckpointError(f"{where}: train parameter {pname!r} belongs to none of the train modules {list(modules)}")
        if (not isinstance(info, dict) or set(info) != {"dtype", "shape"} or not _is_dtype(info["dtype"])
                or not isinstance(info["shape"], list) or len(info["shape"]) > 8
                or not all(_is_int(v) and 0 <= v <= MAX_DIM for v in info["shape"])):
            raise CheckpointError(f"{where}: train parameter {pname!r} must be described as "
                                  f"{{'dtype': one of {sorted(DTYPES)}, 'shape': [sizes]}}, got {str(info)[:80]}")
        out[pname] = (tuple(info["shape"]), info["dtype"])
    return out


def _layer_table(meta: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if meta["format_version"] >= 2:
        try:
            return expand_groups(meta["layer_groups"])
        except ValueError as err:
            raise CheckpointError(f"{where}: {err}; re-save the adapter") from None
    layers = meta["layers"]
    if not isinstance(layers, dict) or not all(isinstance(e, dict) for e in layers.values()):
        raise CheckpointError(f"{where}: 'layers' must map layer names to entries; re-save the adapter")
    for name, entry in layers.items():
        for which in "AB":
            if not isinstance(entry.get(which), dict):
                raise CheckpointError(f"{where}: layer {name!r} has no entry for factor {which}; re-save the adapter")
    return layers, checks_from_layers(layers)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _layer_entry(name: str, raw: dict[str, Any], config: AdapterConfig, version: int, where: str) -> LayerEntry:
    where = f"{where}: layer {name!r}"
    if not name or any(not part for part in name.split(".")):
        raise CheckpointError(f"{where}: not a module name")
    allowed = _ENTRY_KEYS | ({"kind", "alpha"} if version == 1 else set())
    unknown, missing = sorted(set(raw) - allowed), sorted(_ENTRY_KEYS - set(raw))
    if unknown or missing:
        raise CheckpointError(f"{where}: " + (f"unknown fields {unknown}" if unknown else f"missing fields {missing}")
                              + "; re-save the adapter")
    for key in ("d_in", "d_out", "rank"):
        if not _is_int(raw[key]) or not 1 <= raw[key] <= MAX_DIM:
            raise CheckpointError(f"{where}: {key} must be an integer in 1..{MAX_DIM}, got {raw[key]!r}")
    scale = raw["scale"]
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale <= 0:
        raise CheckpointError(f"{where}: scale must be a finite number > 0, got {scale!r}")
    if "alpha" in raw and (not _number(raw["alpha"]) or scale_for(raw["alpha"], raw["rank"], config.scaling) != scale):
        raise CheckpointError(f"{where}: alpha {raw['alpha']!r} does not give its scale {scale}")
    kind = raw.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise CheckpointError(f"{where}: kind must be a string")
    factors = {which: _factor_entry(f"{where} factor {which}", raw[which], name, which, config, version)
               for which in "AB"}
    return LayerEntry(name, raw["d_in"], raw["d_out"], raw["rank"], float(scale), factors["A"], factors["B"], kind)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _factor_entry(where: str, raw: Any, layer: str, which: str, config: AdapterConfig, version: int) -> FactorEntry:
    allowed = (_FACTOR_KEYS_V1 if version == 1 else _FACTOR_KEYS) | ({"dtype"} if version >= 3 else set())
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}: must be an object, got {str(raw)[:40]}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise CheckpointError(f"{where}: unknown fields {unknown}; re-save the adapter")
    policy = config.a if which == "A" else config.b
    stored = raw.get("stored")
    if not isinstance(stored, bool):
        raise CheckpointError(f"{where}: 'stored' must be true or false, got {stored!r}")
    seed = factor_seed(config.seed, layer, which)
    if raw.get("seed", seed) != seed:
        raise CheckpointError(f"{where}: seed {raw.get('seed')!r} is not the one the config's seed {config.seed} "
                              "gives this layer; the file was edited — re-save the adapter")
    for key, expected in (("init", policy.init), ("trainable", policy.trainable)):
        if key in raw and raw[key] != expected:
            raise CheckpointError(f"{where}: {key} {raw[key]!r} disagrees with the config's {expected!r}")
    regenerable = raw.get("regenerable", True)
    if not isinstance(regenerable, bool):
        raise CheckpointError(f"{where}: 'regenerable' must be true or false, got {regenerable!r}")
    if not stored and (policy.trainable or not regenerable):
        why = "it is trained" if policy.trainable else "it no longer equals its init"
        raise CheckpointError(f"{where}: not stored, but {why}, so its values can only come from the tensor file; "
                              "the config was edited — re-save the adapter")
    dtype = raw.get("dtype")
    if version >= 3 and stored != (dtype is not None) or dtype is not None and not _is_dtype(dtype):
        raise CheckpointError(f"{where}: a stored factor names its dtype (one of {sorted(DTYPES)}) and a regenerated "
                              f"one does not; got stored={stored}, dtype={dtype!r}")
    return FactorEntry(policy.init, policy.trainable, stored, seed, regenerable, dtype)


def _check(raw: dict[str, Any], where: str) -> FingerprintCheck:
    fp = raw["fingerprint"]
    if not isinstance(fp, list) or len(fp) != 5 or not all(_number(v) for v in fp):
        raise CheckpointError(f"{where}: {raw['label']}: the fingerprint of factor {raw['factor']} must be a list of "
                              f"5 finite numbers, got {str(fp)[:80]}; re-save the adapter")
    return FingerprintCheck(raw["factor"], tuple(raw["layers"]), tuple(float(v) for v in fp), str(raw["label"]))


def _check_tensor(where: Path, key: str, value: torch.Tensor, shape, dtype: str | None) -> None:
    if dtype is not None and value.dtype != DTYPES[dtype]:
        raise CheckpointError(f"{where}: tensor {key!r} has dtype {value.dtype}, its config says {DTYPES[dtype]}; "
                              "the file was edited — re-save the adapter")
    if value.dtype not in DTYPE_NAMES:
        raise CheckpointError(f"{where}: tensor {key!r} has dtype {value.dtype}; adapter tensors are float16, "
                              "bfloat16, float32 or float64")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise CheckpointError(f"{where}: tensor {key!r} has shape {tuple(value.shape)}, its config says {tuple(shape)}")
    if not bool(torch.isfinite(value).all()):
        raise CheckpointError(f"{where}: tensor {key!r} holds non-finite values (NaN or ±inf): the training that "
                              "wrote it diverged, or the file was edited")
