"""Interoperability with Hugging Face PEFT's LoRA checkpoints (read and written without importing peft).

PEFT's format: ``adapter_config.json`` (``peft_type: "LORA"``, ``r``, ``lora_alpha``, ``target_modules``,
``rank_pattern``, ``alpha_pattern``, ``use_rslora``, ``modules_to_save`` …) and
``adapter_model.safetensors`` with keys ``base_model.model.<module>.lora_A.weight`` (r × d_in, or
r × c_in × k × k for a convolution), ``…lora_B.weight`` (d_out × r, or d_out × r × 1 × 1), and
``base_model.model.<module>.<param>`` for modules_to_save. Scaling is ``lora_alpha / r`` (or ``/√r``).

Exported adapters carry their frozen factors as ordinary matrices, so ``peft.PeftModel.from_pretrained``
gives the same outputs; importing gives asymlora layers whose factors are marked as loaded (they are
stored in full when re-saved), and whose trainable factors you choose (``train="B"`` continues a
PEFT LoRA as a B-only adapter).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_write, atomic_write_json
from .checkpoint import CheckpointError
from .config import AdapterConfig, Factor
from .inject import adapted_layers, get_config, get_train_modules, inject

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."


def export_peft(model: nn.Module, path: str | os.PathLike, *, base_model_name_or_path: str | None = None,
                task_type: str | None = None) -> Path:
    """Write the adapter of ``model`` as a standard PEFT LoRA adapter folder; returns the folder."""
    config = get_config(model)
    layers = list(adapted_layers(model))
    default_rank = config.rank
    default_alpha = config.alpha_for(default_rank)
    tensors: dict[str, torch.Tensor] = {}
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, float] = {}
    fan_in_fan_out = False
    for name, layer in layers:
        a = layer.lora_A.detach().to("cpu").contiguous()
        b = layer.lora_B.detach().to("cpu").contiguous()
        if layer.kind == "conv2d":
            a = layer._a_kernel(a).contiguous()
            b = b[:, :, None, None].contiguous()
        fan_in_fan_out |= layer.kind == "conv1d"
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b
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
    atomic_write(path / PEFT_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write_json(path / PEFT_CONFIG, peft_config)
    return path


def read_peft_config(path: str | os.PathLike) -> dict[str, Any]:
    cfg_file = Path(path) / PEFT_CONFIG
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} is not a PEFT adapter folder: {PEFT_CONFIG} is missing")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{cfg_file} is corrupt: {err}") from None
    if cfg.get("peft_type") != "LORA":
        raise CheckpointError(f"{cfg_file}: peft_type is {cfg.get('peft_type')!r}; only LoRA adapters can be imported")
    for flag in ("use_dora", "use_qalora", "lora_bias"):
        if cfg.get(flag):
            raise CheckpointError(f"{cfg_file}: {flag}=true adapters are not plain B·A LoRA and cannot be imported")
    if cfg.get("bias", "none") != "none":
        raise CheckpointError(f"{cfg_file}: bias={cfg['bias']!r} trains base biases; only bias='none' is supported")
    return cfg


def read_peft_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    weights = Path(path) / PEFT_WEIGHTS
    if not weights.is_file():
        if (Path(path) / "adapter_model.bin").is_file():
            raise CheckpointError(f"{path} holds a pickled adapter_model.bin, which asymlora never unpickles; "
                                  "convert it to safetensors with PEFT (save_pretrained(safe_serialization=True))")
        raise CheckpointError(f"{weights} is missing")
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights} cannot be read ({err}); the file is corrupt") from None


def _split_keys(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """Group ``lora_A/lora_B`` tensors by module name; the rest are modules_to_save parameters."""
    factors: dict[str, dict[str, torch.Tensor]] = {}
    others: dict[str, torch.Tensor] = {}
    pat = re.compile(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")
    for key, value in tensors.items():
        m = pat.match(key)
        if m:
            factors.setdefault(m.group(1), {})[m.group(2)] = value
        else:
            others[key[len(PREFIX):] if key.startswith(PREFIX) else key] = value
    for name, pair in factors.items():
        if set(pair) != {"A", "B"}:
            raise CheckpointError(f"PEFT adapter: module {name!r} has lora_{''.join(pair)} but not both factors")
    return factors, others


def _as_matrix(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def read_peft_factors(path: str | os.PathLike) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module name: (A, B)}`` in matrix layout from a PEFT LoRA folder."""
    read_peft_config(path)
    factors, _ = _split_keys(read_peft_tensors(path))
    return {n: (_as_matrix(p["A"]).float(), _as_matrix(p["B"]).float()) for n, p in factors.items()}


def _peft_pattern_value(name: str, patterns: dict[str, Any], default: Any) -> Any:
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def import_peft(base_model: nn.Module, path: str | os.PathLike, *, train: str = "AB", seed: int = 0) -> nn.Module:
    """Load a PEFT LoRA adapter into asymlora layers on ``base_model``; returns the model.

    ``train`` chooses what trains afterwards: ``"AB"`` (both, as in LoRA), ``"B"`` (continue as a
    B-only adapter: the loaded A is frozen) or ``"A"`` (A-only).
    """
    if train not in ("AB", "B", "A"):
        raise ValueError(f"train must be 'AB', 'B' or 'A', got {train!r}")
    cfg = read_peft_config(path)
    factors, others = _split_keys(read_peft_tensors(path))
    if not factors:
        raise CheckpointError(f"{path}: the PEFT adapter holds no lora_A / lora_B tensors")
    r = int(cfg.get("r", 8))
    lora_alpha = float(cfg.get("lora_alpha", r))
    rank_pattern = {re.escape(n): int(p["A"].shape[0]) for n, p in factors.items() if p["A"].shape[0] != r}
    alpha_pattern = {}
    for name in factors:
        alpha = float(_peft_pattern_value(name, cfg.get("alpha_pattern") or {}, lora_alpha))
        if alpha != lora_alpha:
            alpha_pattern[re.escape(name)] = alpha
    # Nominal inits: the loaded values replace them; only the trainable flags matter.
    config = AdapterConfig(
        a=Factor("kaiming", "A" in train), b=Factor("kaiming", "B" in train), rank=r, alpha=lora_alpha,
        targets="|".join(re.escape(n) for n in factors), seed=seed,
        train_modules=tuple(cfg.get("modules_to_save") or ()), dropout=float(cfg.get("lora_dropout") or 0.0),
        scaling="rslora" if cfg.get("use_rslora") else "standard",
        rank_pattern=rank_pattern, alpha_pattern=alpha_pattern,
    )
    try:
        inject(base_model, config)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"the PEFT adapter at {path} does not fit this base model: {err}") from None
    for name, layer in adapted_layers(base_model):
        pair = factors[name]
        for which in "AB":
            value = _as_matrix(pair[which])
            current = getattr(layer, f"lora_{which}")
            if value.shape != current.shape:
                raise CheckpointError(f"{name}.lora_{which}: PEFT shape {tuple(value.shape)} ≠ this model's "
                                      f"{tuple(current.shape)}; was the adapter made for another base model?")
            layer.set_factor(which, value)
    params = dict(base_model.named_parameters())
    for key, value in others.items():
        pname = key.replace(".modules_to_save.default.", ".")
        if pname not in params or params[pname].shape != value.shape:
            raise CheckpointError(f"PEFT adapter parameter {key!r} does not fit this base model")
        with torch.no_grad():
            params[pname].copy_(value)
    return base_model
