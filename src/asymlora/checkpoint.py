"""asymlora's own checkpoint: only what was trained, frozen random factors stored as their seed.

``save_adapter`` writes a folder (the format: :mod:`asymlora.adapter_file`); ``load_adapter`` puts
it onto a fresh base model, all or nothing; ``read_factors`` gives the factors without a model.

A B-only adapter stores B alone, d_out·r numbers per layer against LoRA's (d_in + d_out)·r, so its
file is d_out / (d_in + d_out) of a LoRA file (half for square layers). Loading regenerates the frozen
A from its seed and checks its fingerprint, so a platform that would generate a different matrix is
an error, never a silently different model. Nothing is unpickled.

**Saving into an existing folder** leaves either the old complete adapter or the new one, whenever
the process dies: both files are written to temporary files first; the old tensor file is renamed to
``.adapter.safetensors.prev-<sha>`` (which the old config still names by its sha256), the new tensor
file and then the new config are renamed into place, and the backup is removed. A reader that finds
the old config beside the new tensor file reads the backup. One writer per folder at a time.

**Loading** opens the folder once (:class:`~asymlora.adapter_file.AdapterFolder`: every field and
tensor checked), checks it against the base model (layer names, types, shapes, ranks, scales, train
parameters), builds the adapted layers and fills them, checks the regenerated factors' fingerprints,
and only then changes the model. On any error the model is as it was given.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .adapter_file import (
    CONFIG_NAME,
    DIGEST_KEY,
    DTYPE_NAMES,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    AdapterFolder,
    CheckpointError,
    backup_name,
    config_digest,
    factor_key,
    in_modules,
    read_config,
    serialize,
    train_key,
)
from .atomic import clean_stale, fsync_dir, json_bytes, write_temp_bytes
from .config import scale_for
from .init import factor_seed, fingerprint, fingerprints_match
from .inject import adapted_layers, attach, build_layers, find_train_modules, get_config, get_train_modules, plan_layers
from .layer_groups import group_layers
from .layers import AdaptedLayer, matrix_weight
from .peft_interop import is_peft_folder, read_peft_factors
from .version import __version__

__all__ = ["CheckpointError", "CONFIG_NAME", "WEIGHTS_NAME", "save_adapter", "load_adapter", "load_folder",
           "read_factors", "read_meta"]


def _versions() -> dict[str, str]:
    return {"asymlora": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _must_store(layer: AdaptedLayer, which: str, store_frozen: bool) -> bool:
    return layer.is_trainable(which) or store_frozen or layer.factor_origin[which] != "init"


def _dtype_name(t: torch.Tensor, what: str) -> str:
    if t.dtype not in DTYPE_NAMES:
        raise TypeError(f"{what} has dtype {t.dtype}; asymlora checkpoints store float16, bfloat16, float32 or float64")
    return DTYPE_NAMES[t.dtype]


def _contents(model: nn.Module, store_frozen: bool, extra: dict[str, Any] | None) -> tuple[dict, dict]:
    """(tensors, config) of the adapter of ``model``, the config without its ``weights_sha256``."""
    config = get_config(model)
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, Any] = {}
    for name, layer in adapted_layers(model):
        # Only what the config does not already say (the reader fills the rest in): the factor's init and
        # trainability are the config's, its seed is factor_seed(config seed, layer, factor), "regenerable"
        # is written only when false (a stored factor that no longer equals its init). The entries are then
        # written as groups of alike layers (layer_groups).
        entry: dict[str, Any] = {"d_in": layer.d_in, "d_out": layer.d_out, "rank": layer.rank, "scale": layer.scale}
        for which in "AB":
            value = layer.factor(which)
            stored = _must_store(layer, which, store_frozen)
            entry[which] = {"stored": stored}
            if layer.seeds[which] != factor_seed(config.seed, name, which):
                raise ValueError(f"{name}: factor {which} has a seed the config does not give; it cannot be saved")
            if layer.factor_origin[which] != "init":
                entry[which]["regenerable"] = False
            if stored:  # covered by the file's sha256; a regenerated factor needs a fingerprint instead
                entry[which]["dtype"] = _dtype_name(value, f"{name}.lora_{which}")
                tensors[factor_key(name, which)] = value.detach().to("cpu").contiguous()
            else:
                entry[which]["fingerprint"] = fingerprint(value)
        layers[name] = entry
    train_modules = get_train_modules(model)
    params: dict[str, Any] = {}
    for module_name in train_modules:
        for pname, p in model.get_submodule(module_name).named_parameters():
            full = f"{module_name}.{pname}"
            params[full] = {"dtype": _dtype_name(p, full), "shape": list(p.shape)}
            tensors[train_key(full)] = p.detach().to("cpu").contiguous()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict(),
            "notation": config.notation, "train_modules": list(train_modules), "train_params": params,
            "layer_groups": group_layers(layers), "created_by": _versions(), "extra": extra or {}}
    return tensors, meta


def save_adapter(model: nn.Module, path: str | os.PathLike, *, store_frozen: bool = False,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write the adapter of ``model`` to the folder ``path``; returns the folder.

    Stores every trainable factor, every factor no longer equal to its init, the parameters of the
    config's ``train_modules``, and (only with ``store_frozen=True``) the frozen random factors too.
    ``extra`` is free-form JSON metadata kept in the config file (e.g. the task, the base model name).
    Saving over an existing adapter replaces it as a whole, even if the process is killed midway.
    """
    tensors, meta = _contents(model, store_frozen, extra)
    data = serialize(tensors, {"format": FORMAT, DIGEST_KEY: config_digest(meta)})
    meta["weights_sha256"] = hashlib.sha256(data).hexdigest()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _replace_folder(path, data, json_bytes(meta, compact=True))  # ~0.2 KiB per group of alike layers
    return path


def _replace_folder(path: Path, weights: bytes, config: bytes) -> None:
    """Put the two files in place so that every moment leaves one complete adapter (module docstring)."""
    for stale in path.glob(f".{WEIGHTS_NAME}.prev-*"):  # a backup whose save finished or died
        if stale.name != _current_backup(path):
            stale.unlink(missing_ok=True)
    clean_stale(path, WEIGHTS_NAME)
    clean_stale(path, CONFIG_NAME)
    tmp_weights = write_temp_bytes(path / WEIGHTS_NAME, weights)
    tmp_config = None
    try:
        tmp_config = write_temp_bytes(path / CONFIG_NAME, config)
        backup = _current_backup(path)
        if backup is not None and (path / WEIGHTS_NAME).exists() and not (path / backup).exists():
            os.replace(path / WEIGHTS_NAME, path / backup)
        os.replace(tmp_weights, path / WEIGHTS_NAME)
        os.replace(tmp_config, path / CONFIG_NAME)
    except BaseException:
        for tmp in (tmp_weights, tmp_config):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path)
    for old in path.glob(f".{WEIGHTS_NAME}.prev-*"):
        old.unlink(missing_ok=True)


def _current_backup(path: Path) -> str | None:
    """The backup name of the tensor file the folder's present config names, if it has a readable one."""
    try:
        return backup_name(read_config(path)["weights_sha256"])
    except CheckpointError:
        return None


# ---- loading ------------------------------------------------------------------------------------------

def load_adapter(base_model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Inject the saved adapter into ``base_model`` (a fresh copy of the base it was trained on) and
    load its weights; returns the model, whose outputs equal the saved model's.

    All or nothing: on any error (a :class:`CheckpointError` saying what is wrong) the model is as it
    was. Each adapted layer takes the training mode of the module it replaces.
    """
    return load_folder(base_model, AdapterFolder.open(path))


def load_folder(base_model: nn.Module, folder: AdapterFolder) -> nn.Module:
    """:func:`load_adapter` of a folder already opened."""
    config = folder.config
    try:
        plan = plan_layers(base_model, config, check_patterns=False)
        train_modules = find_train_modules(base_model, config.train_modules)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"the adapter at {folder.path} does not fit this base model: {err}") from None
    _check_plan(folder, plan, train_modules)
    params = _check_train_params(base_model, folder, train_modules)
    try:
        layers = build_layers(plan, config)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"the adapter at {folder.path} does not fit this base model: {err}") from None
    for layer in layers.values():
        _fill(layer, folder)
    folder.check_regenerated(lambda name, which: layers[name].factor(which))
    # everything is checked: from here on nothing can fail
    attach(base_model, config, layers, train_modules)
    with torch.no_grad():
        for pname, value in folder.train_tensors.items():
            params[pname].copy_(value)
    return base_model


def _check_plan(folder: AdapterFolder, plan, train_modules) -> None:
    saved, here = folder.layers, {p.name: p for p in plan}
    missing, extra = sorted(set(saved) - set(here)), sorted(set(here) - set(saved))
    if missing or extra:
        raise CheckpointError(f"the adapter at {folder.path} was made for a different base model: layers in the "
                              f"checkpoint but not adapted here: {missing[:5]}; adapted here but not in the "
                              f"checkpoint: {extra[:5]}")
    if list(train_modules) != list(folder.train_modules):
        raise CheckpointError(f"the adapter at {folder.path} trained the modules {list(folder.train_modules)} in "
                              f"full, but its config finds {list(train_modules)} in this base model")
    for name, entry in saved.items():
        p = here[name]
        d_in, d_out = p.cls.dims(p.module)
        for key, mine in (("d_in", d_in), ("d_out", d_out), ("rank", p.rank)):
            if getattr(entry, key) != mine:
                raise CheckpointError(f"{name}: the checkpoint has {key}={getattr(entry, key)} but this base model's "
                                      f"layer gives {mine}; load it onto the base model it was trained on")
        if entry.kind is not None and entry.kind != p.cls.kind:
            raise CheckpointError(f"{name}: the checkpoint adapted a {entry.kind} layer, this model has a {p.cls.kind}")
        scale = scale_for(p.alpha, p.rank, folder.config.scaling)
        if entry.scale != scale:
            raise CheckpointError(f"{name}: the checkpoint's scale {entry.scale} is not the {scale} its config gives "
                                  "(alpha, alpha_pattern, scaling); the config was edited — re-save the adapter")


def _check_train_params(model: nn.Module, folder: AdapterFolder, train_modules) -> dict[str, torch.Tensor]:
    """The model's parameters of the train modules, after checking the file holds exactly those."""
    params = {n: p for n, p in model.named_parameters() if in_modules(n, train_modules)}
    missing, extra = sorted(set(params) - set(folder.train_tensors)), sorted(set(folder.train_tensors) - set(params))
    if missing:
        raise CheckpointError(f"the adapter at {folder.path} lacks the trained parameter(s) {missing[:5]} of its "
                              "train modules; the checkpoint is incomplete — re-save the adapter")
    if extra:
        raise CheckpointError(f"the adapter at {folder.path} trains parameter(s) {extra[:5]}, which this base model's "
                              "train modules lack")
    for pname, value in folder.train_tensors.items():
        if params[pname].shape != value.shape:
            raise CheckpointError(f"{pname}: checkpoint shape {tuple(value.shape)} ≠ model shape "
                                  f"{tuple(params[pname].shape)} (e.g. a head with another number of labels)")
    return params


def _fill(layer: AdaptedLayer, folder: AdapterFolder) -> None:
    """Copy the stored factors into ``layer`` (shapes were checked when the folder was opened)."""
    entry = folder.layers[layer.name]
    for which in "AB":
        value = folder.stored(layer.name, which)
        if value is None:
            continue
        regenerated = fingerprint(layer.factor(which))
        layer.set_factor(which, value)
        if entry.factor(which).regenerable and fingerprints_match(fingerprint(value), regenerated):
            layer.factor_origin[which] = "init"


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The checked config of the adapter folder at ``path`` as a dict, with ``layers``: one entry per
    layer (``d_in``, ``d_out``, ``rank``, ``scale`` and, per factor, ``init``, ``trainable``, ``seed``,
    ``stored``, ``regenerable``, ``dtype``), whatever the format version. The folder is fully checked."""
    folder = AdapterFolder.open(path)
    meta = dict(folder.meta)
    meta["layers"] = {name: {"d_in": e.d_in, "d_out": e.d_out, "rank": e.rank, "scale": e.scale,
                             "A": dataclasses.asdict(e.A), "B": dataclasses.asdict(e.B)}
                      for name, e in folder.layers.items()}
    return meta


# ---- factors without a model ----------------------------------------------------------------------------

def read_factors(path: str | os.PathLike, base_model: nn.Module | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{layer name: (A, B)}`` in matrix layout (float32, CPU) from an asymlora or a PEFT LoRA folder.

    Factors stored as a seed are regenerated; an ``"svd"`` frozen factor needs ``base_model`` (the
    singular vectors of its W0). Used for analysis (similarity, combination) without building a model.
    """
    path = Path(path)
    if is_peft_folder(path):
        return read_peft_factors(path)
    return folder_factors(AdapterFolder.open(path), base_model)


def folder_factors(folder: AdapterFolder, base_model: nn.Module | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """:func:`read_factors` of a folder already opened."""
    modules = dict(base_model.named_modules()) if base_model is not None else {}

    def weight_of(name, entry):
        if name not in modules:
            return None
        try:
            w0 = matrix_weight(modules[name])
        except TypeError as err:
            raise CheckpointError(f"{name}: {err}") from None
        if tuple(w0.shape) != (entry.d_out, entry.d_in):
            raise CheckpointError(f"{name}: the base model's weight is {tuple(w0.shape)}, the checkpoint's layer is "
                                  f"{(entry.d_out, entry.d_in)}")
        return w0
    return folder.factors(weight_of)
