"""asymlora's own checkpoint: only what was trained, frozen random factors stored as their seed.

A checkpoint is a folder with

* ``adapter_config.json``: the :class:`~asymlora.config.AdapterConfig`, the train-module names, the
  adapted layers as groups that share shapes, rank, scale and, per factor, whether it is stored or
  regenerated (:mod:`asymlora.layer_groups`; a factor's seed and init follow from the config), with a
  summed fingerprint of each group's regenerated factors; plus the sha256 of the tensor file and the
  library versions that wrote it. Format 1 (one entry per layer) is still read.
* ``adapter.safetensors``: the stored factors (``layers.<name>.lora_A|lora_B``) and the parameters
  of the train modules (``train_modules.<param name>``).

A B-only adapter stores B alone, d_out·r numbers per layer against LoRA's (d_in + d_out)·r, so its
file is d_out / (d_in + d_out) of a LoRA file (half for square layers). Loading regenerates the frozen
A from its seed and checks its fingerprint, so a platform that would generate a different matrix is
an error, never a silently different model. Nothing is unpickled; both files are written atomically.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_write, atomic_write_json, sha256_file
from .config import AdapterConfig
from .init import factor_seed, fingerprint, fingerprints_match, init_factor
from .inject import adapted_layers, get_config, get_train_modules, inject, unload
from .layer_groups import checks_from_layers, expand_groups, group_layers, sum_fingerprints
from .layers import AdaptedLayer

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
FORMAT = "asymlora-adapter"
FORMAT_VERSION = 2  # 2: layers written as groups (layer_groups); 1: one entry per layer


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the model it is loaded onto."""


def _versions() -> dict[str, str]:
    from . import __version__

    return {"asymlora": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _must_store(layer: AdaptedLayer, which: str, store_frozen: bool) -> bool:
    return layer.is_trainable(which) or store_frozen or layer.factor_origin[which] != "init"


def save_adapter(model: nn.Module, path: str | os.PathLike, *, store_frozen: bool = False,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write the adapter of ``model`` to the folder ``path``; returns the folder.

    Stores every trainable factor, every factor no longer equal to its init, the parameters of the
    config's ``train_modules``, and (only with ``store_frozen=True``) the frozen random factors too.
    ``extra`` is free-form JSON metadata kept in the config file (e.g. the task, the base model name).
    """
    config = get_config(model)
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, Any] = {}
    for name, layer in adapted_layers(model):
        # Only what the config does not already say (read_meta fills the rest in): the factor's init and
        # trainability are the config's, its seed is factor_seed(config seed, layer, factor) unless it
        # differs, "regenerable" is written only when false (a stored factor that no longer equals its
        # init). The entries are then written as groups of alike layers (layer_groups).
        entry: dict[str, Any] = {"d_in": layer.d_in, "d_out": layer.d_out, "rank": layer.rank,
                                 "scale": layer.scale}
        for which in "AB":
            value = getattr(layer, f"lora_{which}")
            stored = _must_store(layer, which, store_frozen)
            entry[which] = {"stored": stored}
            if layer.seeds[which] != factor_seed(config.seed, name, which):
                entry[which]["seed"] = layer.seeds[which]
            if layer.factor_origin[which] != "init":
                entry[which]["regenerable"] = False
            if not stored:  # a stored factor is covered by the file's sha256; a regenerated one needs this
                entry[which]["fingerprint"] = fingerprint(value)
            else:
                tensors[f"layers.{name}.lora_{which}"] = value.detach().to("cpu").contiguous()
        layers[name] = entry
    train_modules = get_train_modules(model)
    for module_name in train_modules:
        for pname, p in model.get_submodule(module_name).named_parameters():
            tensors[f"train_modules.{module_name}.{pname}"] = p.detach().to("cpu").contiguous()
    weights = path / WEIGHTS_NAME
    atomic_write(weights, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict(),
            "notation": config.notation, "train_modules": list(train_modules), "layer_groups": group_layers(layers),
            "weights_sha256": sha256_file(weights), "created_by": _versions(), "extra": extra or {}}
    atomic_write_json(path / CONFIG_NAME, meta, compact=True)  # ~0.2 KiB per group of alike layers
    return path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``adapter_config.json`` of an asymlora checkpoint, with clear errors."""
    path = Path(path)
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} is not an asymlora adapter folder: {CONFIG_NAME} is missing")
    try:
        meta = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{cfg_file} is corrupt ({err}); re-save the adapter") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        hint = " (it looks like a PEFT adapter: use asymlora.import_peft)" if "peft_type" in (meta or {}) else ""
        raise CheckpointError(f"{cfg_file} is not an asymlora adapter config{hint}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{cfg_file} has format version {meta['format_version']}, newer than this "
                              f"asymlora reads ({FORMAT_VERSION}); upgrade asymlora")
    if meta.get("format_version", 0) >= 2:
        try:
            meta["layers"], meta["fingerprint_checks"] = expand_groups(meta.get("layer_groups") or [])
        except ValueError as err:
            raise CheckpointError(f"{cfg_file}: {err}; re-save the adapter") from None
    elif isinstance(meta.get("layers"), dict):
        meta["fingerprint_checks"] = checks_from_layers(meta["layers"])
    _fill_layer_defaults(meta, cfg_file)
    return meta


def check_regenerated(meta: dict[str, Any], factor_of) -> None:
    """Check every regenerated frozen factor against the fingerprints saved with it.

    ``factor_of(layer name, "A"|"B")`` gives the factor as regenerated here. A check covers one layer
    (format 1) or a group of alike layers, whose fingerprints are summed (format 2).
    """
    for check in meta.get("fingerprint_checks", []):
        which = check["factor"]
        actual = sum_fingerprints([fingerprint(factor_of(name, which)) for name in check["layers"]])
        if not fingerprints_match(check["fingerprint"], actual):
            init = meta["layers"][check["layers"][0]][which]["init"]
            raise CheckpointError(
                f"{check['label']}: the frozen factor {which} "
                f"({'input projection' if which == 'A' else 'output projection'}, init {init!r}) regenerated from "
                f"its seed here differs from the one the adapter was trained with (written by "
                f"{_describe_versions(meta)}). The random generator or the base weights differ. To recover: "
                "load it with the versions that wrote it and re-save with "
                "asymlora.save_adapter(model, path, store_frozen=True), which stores the matrix itself.")


def _fill_layer_defaults(meta: dict[str, Any], cfg_file: Path) -> None:
    """Give every layer's factor entry its ``seed``, ``init``, ``trainable`` (from the config) and ``regenerable``."""
    config = meta.get("config")
    layers = meta.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, dict):
        raise CheckpointError(f"{cfg_file} lacks its 'config' or 'layers' section; re-save the adapter")
    for name, entry in layers.items():
        for which in "AB":
            info = entry.get(which) if isinstance(entry, dict) else None
            factor = config.get(which.lower())
            if not isinstance(info, dict) or not isinstance(factor, dict):
                raise CheckpointError(f"{cfg_file}: layer {name!r} has no entry for factor {which}; re-save the adapter")
            if "seed" not in info:
                info["seed"] = factor_seed(int(config.get("seed", 0)), name, which)
            info.setdefault("init", factor.get("init"))
            info.setdefault("trainable", factor.get("trainable"))
            info.setdefault("regenerable", True)


def read_tensors(path: str | os.PathLike, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, after checking the file's sha256 against the config."""
    weights = Path(path) / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing; the checkpoint is incomplete — re-save the adapter")
    actual = sha256_file(weights)
    if actual != meta.get("weights_sha256"):
        raise CheckpointError(f"{weights} does not match its config (sha256 {actual[:12]}… ≠ "
                              f"{str(meta.get('weights_sha256'))[:12]}…): the file is corrupt or from another "
                              "save. Re-save the adapter, or restore both files from the same save.")
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights} cannot be read ({err}); re-save the adapter") from None


def load_adapter(base_model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Inject the saved adapter into ``base_model`` (a fresh copy of the base it was trained on) and
    load its weights; returns the model, whose outputs equal the saved model's."""
    meta = read_meta(path)
    tensors = read_tensors(path, meta)
    config = AdapterConfig.from_dict(meta["config"])
    try:
        inject(base_model, config)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"the adapter at {path} does not fit this base model: {err}") from None
    try:
        _load_into(base_model, meta, tensors, path)
    except CheckpointError:
        unload(base_model, merge=False)  # leave the base model as it was given
        raise
    return base_model


def _load_into(base_model: nn.Module, meta: dict[str, Any], tensors: dict[str, torch.Tensor], path) -> None:
    layers = dict(adapted_layers(base_model))
    saved = meta["layers"]
    missing, extra = sorted(set(saved) - set(layers)), sorted(set(layers) - set(saved))
    if missing or extra:
        raise CheckpointError(f"the adapter at {path} was made for a different base model: layers in the "
                              f"checkpoint but not adapted here: {missing[:5]}; adapted here but not in the "
                              f"checkpoint: {extra[:5]}")
    for name, entry in saved.items():
        _load_layer(layers[name], entry, tensors, path)
    check_regenerated(meta, lambda name, which: getattr(layers[name], f"lora_{which}"))
    params = dict(base_model.named_parameters())
    for key, value in tensors.items():
        if not key.startswith("train_modules."):
            continue
        pname = key[len("train_modules."):]
        if pname not in params:
            raise CheckpointError(f"the adapter at {path} trains parameter {pname!r}, which this base model lacks")
        if params[pname].shape != value.shape:
            raise CheckpointError(f"{pname}: checkpoint shape {tuple(value.shape)} ≠ model shape "
                                  f"{tuple(params[pname].shape)} (e.g. a head with another number of labels)")
        with torch.no_grad():
            params[pname].copy_(value)


def _load_layer(layer: AdaptedLayer, entry: dict[str, Any], tensors: dict[str, torch.Tensor], path) -> None:
    name = layer.name
    for key in ("d_in", "d_out", "rank"):
        if getattr(layer, key) != entry[key]:
            raise CheckpointError(f"{name}: the checkpoint has {key}={entry[key]} but this base model's layer "
                                  f"gives {getattr(layer, key)}; load it onto the base model it was trained on")
    for which in "AB":
        info = entry[which]
        current = getattr(layer, f"lora_{which}")
        if info["stored"]:
            key = f"layers.{name}.lora_{which}"
            if key not in tensors:
                raise CheckpointError(f"{path}: tensor {key!r} is missing from {WEIGHTS_NAME}; re-save the adapter")
            value = tensors[key]
            if tuple(value.shape) != tuple(current.shape):
                raise CheckpointError(f"{key}: shape {tuple(value.shape)} ≠ expected {tuple(current.shape)}")
            regenerated = fingerprint(current)
            layer.set_factor(which, value)
            if info.get("regenerable", True) and fingerprints_match(fingerprint(value), regenerated):
                layer.factor_origin[which] = "init"


def _describe_versions(meta: dict[str, Any]) -> str:
    v = meta.get("created_by") or {}
    return ", ".join(f"{k} {v[k]}" for k in sorted(v)) if isinstance(v, dict) and v else "unknown versions"


def read_factors(path: str | os.PathLike, base_model: nn.Module | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{layer name: (A, B)}`` in matrix layout (float32, CPU) from an asymlora or a PEFT LoRA folder.

    Factors stored as a seed are regenerated; an ``"svd"`` frozen factor needs ``base_model`` (the
    singular vectors of its W0). Used for analysis (similarity, combination) without building a model.
    """
    path = Path(path)
    if (path / CONFIG_NAME).is_file():
        try:
            is_peft = "peft_type" in json.loads((path / CONFIG_NAME).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            is_peft = False
        if is_peft:
            from .peft_interop import read_peft_factors

            return read_peft_factors(path)
    meta = read_meta(path)
    tensors = read_tensors(path, meta)
    modules = dict(base_model.named_modules()) if base_model is not None else {}
    out = {}
    for name, entry in meta["layers"].items():
        pair = []
        for which in "AB":
            info = entry[which]
            shape = (entry["rank"], entry["d_in"]) if which == "A" else (entry["d_out"], entry["rank"])
            if info["stored"]:
                pair.append(tensors[f"layers.{name}.lora_{which}"].float())
                continue
            w0 = None
            if info["init"] == "svd":
                if name not in modules:
                    raise CheckpointError(f"{name}: factor {which} is the SVD of the base weight; pass the "
                                          "base model: read_factors(path, base_model=...), or --base-model "
                                          "on the command line")
                w0 = _matrix_weight(modules[name])
            pair.append(init_factor(info["init"], which, shape, seed=info["seed"], base_weight=w0).float())
        out[name] = (pair[0], pair[1])
    check_regenerated(meta, lambda name, which: out[name][0 if which == "A" else 1])
    return out


def _matrix_weight(module: nn.Module) -> torch.Tensor:
    if isinstance(module, AdaptedLayer):
        return module.base_weight_matrix()
    from .layers import supported_type

    cls = supported_type(module)
    if cls is None:
        raise CheckpointError(f"module of type {type(module).__name__} has no adaptable weight")
    w = module.weight
    if cls.kind == "conv1d":
        return w.T
    return w.reshape(w.shape[0], -1)
