"""Interoperability with Hugging Face PEFT's LoRA checkpoints (read and written without importing peft).

The folder format and its checks are in :mod:`asymlora.peft_folder`; each layer type knows its own
PEFT tensor layout (:meth:`asymlora.layers.AdaptedLayer.to_peft` / ``from_peft``).

Exported adapters carry their frozen factors as ordinary matrices, so ``peft.PeftModel.from_pretrained``
gives the same outputs; importing gives asymlora layers whose factors are marked as loaded (they are
stored in full when re-saved), and whose trainable factors you choose (``train="B"`` continues a
PEFT LoRA as a B-only adapter). An import is all or nothing: every tensor is checked against the
config and the base model before the model changes.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .adapter_file import DIGEST_KEY, CheckpointError, serialize
from .atomic import atomic_write_bytes, json_bytes
from .config import AdapterConfig, Factor
from .inject import adapted_layers, attach, build_layers, find_train_modules, get_config, get_train_modules, plan_named
from .peft_folder import PEFT_CONFIG, PEFT_WEIGHTS, PREFIX, PeftFolder, is_peft_folder, peft_config_digest

__all__ = ["export_peft", "import_peft", "read_peft_factors", "is_peft_folder", "PEFT_CONFIG", "PEFT_WEIGHTS"]


def export_peft(model: nn.Module, path: str | os.PathLike, *, base_model_name_or_path: str | None = None,
                task_type: str | None = None) -> Path:
    """Write the adapter of ``model`` as a standard PEFT LoRA adapter folder; returns the folder.

    The tensor file is written first, then the config (each atomically). PEFT folders carry no
    checksum; the tensor file's header records the sha256 of this config, so ``import_peft`` notices
    a config that was edited or comes from another export.
    """
    config = get_config(model)
    if config.dropout and config.dropout_on != "input":
        warnings.warn(f"the adapter's dropout acts on A·x (dropout_on={config.dropout_on!r}); PEFT's lora_dropout acts "
                      "on the layer input, so training the exported adapter further in PEFT uses input dropout "
                      "(outputs in eval mode are the same)", stacklevel=2)
    layers = list(adapted_layers(model))
    default_rank = config.rank
    default_alpha = config.alpha_for(default_rank)
    tensors: dict[str, torch.Tensor] = {}
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, float] = {}
    fan_in_fan_out = False
    for name, layer in layers:
        for which in "AB":
            value = layer.to_peft(which, layer.factor(which).detach())
            tensors[f"{PREFIX}{name}.{layer.peft_keys[which]}"] = value.to("cpu").contiguous()
        fan_in_fan_out |= layer.peft_fan_in_fan_out
        key = re.escape(name)
        if layer.rank != default_rank:
            rank_pattern[key] = layer.rank
        if layer.alpha != default_alpha:
            alpha_pattern[key] = layer.alpha
    train_modules = list(get_train_modules(model))
    for module_name in train_modules:
        for pname, p in model.get_submodule(module_name).named_parameters():
            tensors[f"{PREFIX}{module_name}.{pname}"] = p.detach().to("cpu").contiguous()
    peft_config: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model_name_or_path,
        "r": default_rank,
        "lora_alpha": default_alpha,
        # a full-match regex of the exact qualified names: PEFT's list form would also match suffixes
        "target_modules": "^(" + "|".join(re.escape(n) for n, _ in layers) + ")$",
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "lora_dropout": config.dropout,
        "use_rslora": config.scaling == "rslora",
        "fan_in_fan_out": fan_in_fan_out,
        "bias": "none",
        "modules_to_save": train_modules or None,
        "init_lora_weights": True,
        "inference_mode": True,
        "use_dora": False,
    }
    path = Path(path)
    metadata = {"format": "pt", DIGEST_KEY: peft_config_digest(peft_config)}
    atomic_write_bytes(path / PEFT_WEIGHTS, serialize(tensors, metadata))
    atomic_write_bytes(path / PEFT_CONFIG, json_bytes(peft_config))
    return path


def read_peft_factors(path: str | os.PathLike) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module name: (A, B)}`` in matrix layout (float32) from a PEFT LoRA folder.

    Without a model the layer type is unknown, but every PEFT layout flattens to the matrix one: A is
    (r, …) → r × d_in, B is (d_out, r, …) → d_out × r.
    """
    folder = PeftFolder.open(path)
    return {n: (p["A"].reshape(p["A"].shape[0], -1).float(), p["B"].reshape(p["B"].shape[0], -1).float())
            for n, p in folder.factors.items()}


def import_peft(base_model: nn.Module, path: str | os.PathLike, *, train: str = "AB", seed: int = 0) -> nn.Module:
    """Load a PEFT LoRA adapter into asymlora layers on ``base_model``; returns the model.

    ``train`` chooses what trains afterwards: ``"AB"`` (both, as in LoRA), ``"B"`` (continue as a
    B-only adapter: the loaded A is frozen) or ``"A"`` (A-only). Each factor must have exactly the
    shape its layer and the config's rank give it. On any error the model is as it was.
    """
    if train not in ("AB", "B", "A"):
        raise ValueError(f"train must be 'AB', 'B' or 'A', got {train!r}")
    folder = PeftFolder.open(path)
    cfg = folder.config
    sizes = {n: (cfg.rank_of(n), cfg.alpha_of(n)) for n in folder.factors}
    # Nominal inits: the loaded values replace them; only the trainable flags matter. The names are
    # written as exact patterns, so that re-saving and re-loading finds exactly these layers.
    try:
        config = AdapterConfig(
            a=Factor("kaiming", "A" in train), b=Factor("kaiming", "B" in train), rank=cfg.r, alpha=cfg.lora_alpha,
            targets="|".join(re.escape(n) for n in sizes), seed=seed, train_modules=cfg.modules_to_save,
            dropout=cfg.lora_dropout, scaling="rslora" if cfg.use_rslora else "standard",
            rank_pattern={re.escape(n): r for n, (r, _) in sizes.items() if r != cfg.r},
            alpha_pattern={re.escape(n): a for n, (_, a) in sizes.items() if a != cfg.lora_alpha})
        plan = plan_named(base_model, sizes)
        train_modules = find_train_modules(base_model, config.train_modules)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"the PEFT adapter at {path} does not fit this base model: {err}") from None
    params = _check_saved_modules(base_model, folder, train_modules)
    try:
        layers = build_layers(plan, config)
        values = {name: {w: layer.from_peft(w, folder.factors[name][w]) for w in "AB"} for name, layer in layers.items()}
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"the PEFT adapter at {path} does not fit this base model: {err}; was it made for "
                              "another base model, or edited?") from None
    for name, layer in layers.items():
        for which in "AB":
            layer.set_factor(which, values[name][which])
    # everything is checked: from here on nothing can fail
    attach(base_model, config, layers, train_modules)
    with torch.no_grad():
        for pname, value in folder.others.items():
            params[pname].copy_(value)
    return base_model


def _check_saved_modules(model: nn.Module, folder: PeftFolder, train_modules) -> dict[str, torch.Tensor]:
    """The model's parameters of modules_to_save, after checking the folder holds exactly those."""
    params = {n: p for n, p in model.named_parameters() if any(n.startswith(m + ".") for m in train_modules)}
    missing = sorted(set(params) - set(folder.others))
    extra = sorted(set(folder.others) - set(params))
    if missing or extra:
        raise CheckpointError(f"the PEFT adapter at {folder.path} does not fit this base model's modules_to_save: "
                              f"parameters missing from the file: {missing[:5]}; in the file but not here: {extra[:5]}")
    for pname, value in folder.others.items():
        if params[pname].shape != value.shape:
            raise CheckpointError(f"PEFT adapter parameter {pname!r} has shape {tuple(value.shape)}, this base "
                                  f"model's is {tuple(params[pname].shape)}")
    return params
