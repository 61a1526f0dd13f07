"""Finding target modules in any ``nn.Module``, wrapping them in place, and whole-model operations
(merge / unmerge / unload / disable)."""

from __future__ import annotations

import contextlib
import difflib
import re
from typing import Iterator, Sequence

import torch.nn as nn

from .config import ALL_LINEAR, AdapterConfig
from .layers import AdaptedLayer, is_hf_conv1d, supported_type

CONFIG_ATTR = "asymlora_config"
TRAIN_MODULES_ATTR = "asymlora_train_modules"

# Leaf names treated as the output head by "all-linear" (besides the model's own output embeddings).
HEAD_NAMES = ("lm_head", "classifier", "score", "head", "qa_outputs", "pooler_head", "output_projection")


def name_matches(name: str, pattern: str) -> bool:
    """Exact or dotted-suffix match: ``"query"`` matches ``"encoder.layer.0.attention.self.query"``."""
    return name == pattern or name.endswith("." + pattern)


def pattern_matches(name: str, pattern: str) -> bool:
    """A target-style name match, or else a full-match regular expression."""
    if name_matches(name, pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def _is_linear_like(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or is_hf_conv1d(module)


def _output_head_names(model: nn.Module) -> set[str]:
    names = set()
    get_out = getattr(model, "get_output_embeddings", None)
    head = None
    if callable(get_out):
        try:
            head = get_out()
        except (NotImplementedError, AttributeError):
            head = None
    for name, module in model.named_modules():
        if (head is not None and module is head) or name.rsplit(".", 1)[-1] in HEAD_NAMES:
            names.add(name)
    return names


def _closest(wanted: str, names: Sequence[str]) -> str:
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names if n})
    close = difflib.get_close_matches(wanted, list(names) + leaves, n=5, cutoff=0.4)
    return ", ".join(repr(c) for c in close) if close else "(no similar names)"


def find_targets(model: nn.Module, config: AdapterConfig) -> list[str]:
    """Qualified names of the modules ``config.targets`` selects, with clear errors if none match."""
    all_names = [n for n, _ in model.named_modules() if n]
    targets = config.targets
    if targets == ALL_LINEAR:
        heads = _output_head_names(model)
        chosen = [n for n, m in model.named_modules()
                  if n and _is_linear_like(m) and not any(n == h or n.startswith(h + ".") for h in heads)]
        if not chosen:
            raise ValueError("targets='all-linear' found no nn.Linear / Conv1D layers outside the output head")
    elif isinstance(targets, str):
        chosen = [n for n in all_names if re.fullmatch(targets, n)]
        if not chosen:
            raise ValueError(f"target regex {targets!r} matches no module (it must match a whole qualified "
                             f"name). Closest module names: {_closest(targets, all_names)}")
    else:
        chosen = []
        for t in targets:
            hits = [n for n in all_names if name_matches(n, t)]
            if not hits:
                raise ValueError(f"target {t!r} matches no module. Closest module names: {_closest(t, all_names)}. "
                                 "A target matches a qualified name exactly or as a dotted suffix.")
            chosen.extend(h for h in hits if h not in chosen)
    trained = set(find_train_modules(model, config.train_modules)) if config.train_modules else set()
    chosen = [n for n in chosen
              if not any(pattern_matches(n, e) for e in config.exclude)
              and not any(n == t or n.startswith(t + ".") for t in trained)]
    if not chosen:
        raise ValueError("every target was removed by `exclude` / `train_modules`; nothing to adapt")
    return chosen


def find_train_modules(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    all_names = [n for n, _ in model.named_modules() if n]
    found: list[str] = []
    for p in patterns:
        hits = [n for n in all_names if name_matches(n, p)]
        if not hits:
            raise ValueError(f"train_modules entry {p!r} matches no module. "
                             f"Closest module names: {_closest(p, all_names)}")
        # keep only outermost matches (a matched module's children train with it)
        for h in hits:
            if h not in found and not any(h.startswith(f + ".") for f in found):
                found.append(h)
    return found


def _lookup(config: AdapterConfig, name: str, pattern_map: dict, default):
    for pattern, value in pattern_map.items():
        if pattern_matches(name, pattern):
            return value
    return default


def inject(model: nn.Module, config: AdapterConfig) -> nn.Module:
    """Wrap every target of ``model`` in an adapted layer, in place, and return ``model``.

    Every existing parameter is frozen; then the adapters' trainable factors and the parameters of
    ``config.train_modules`` are the only ones with ``requires_grad=True``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"inject expects a torch.nn.Module, got {type(model).__name__}")
    if has_adapters(model):
        raise ValueError("this model already has asymlora adapters; call asymlora.unload(model) first, "
                         "or inject into a fresh copy of the base model")
    names = find_targets(model, config)
    train_modules = find_train_modules(model, config.train_modules)
    modules = dict(model.named_modules())
    # Validate everything before changing anything, so a bad target leaves the model untouched.
    plan = []
    for name in names:
        module = modules[name]
        cls = supported_type(module)
        if cls is None:
            raise TypeError(f"cannot adapt {name!r}: type {type(module).__module__}.{type(module).__name__} "
                            "is not supported (supported: nn.Linear, transformers Conv1D, nn.Conv2d). "
                            "Target its linear sub-layers instead, or add it to `exclude`.")
        rank = _lookup(config, name, config.rank_pattern, config.rank)
        alpha = _lookup(config, name, config.alpha_pattern, config.alpha_for(rank))
        plan.append((name, cls, module, rank, alpha))

    layers = []
    for name, cls, module, rank, alpha in plan:
        try:
            layers.append((name, cls(module, name=name, rank=rank, alpha=alpha, a=config.a, b=config.b,
                                     seed=config.seed, scaling=config.scaling, dropout=config.dropout)))
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    for p in model.parameters():
        p.requires_grad_(False)
    for name, layer in layers:
        _set_submodule(model, name, layer)
    for name in train_modules:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(True)
    object.__setattr__(model, CONFIG_ATTR, config)
    object.__setattr__(model, TRAIN_MODULES_ATTR, tuple(train_modules))
    return model


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def has_adapters(model: nn.Module) -> bool:
    return any(isinstance(m, AdaptedLayer) for m in model.modules())


def adapted_layers(model: nn.Module) -> Iterator[tuple[str, AdaptedLayer]]:
    """Yield ``(qualified_name, layer)`` for every adapted layer, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, AdaptedLayer):
            yield name, module


def get_config(model: nn.Module) -> AdapterConfig:
    config = getattr(model, CONFIG_ATTR, None)
    if config is None:
        raise ValueError("this model has no asymlora adapters; call asymlora.inject(model, config) first")
    return config


def get_train_modules(model: nn.Module) -> tuple[str, ...]:
    return tuple(getattr(model, TRAIN_MODULES_ATTR, ()))


def _require_layers(model: nn.Module) -> list[tuple[str, AdaptedLayer]]:
    layers = list(adapted_layers(model))
    if not layers:
        raise ValueError("this model has no asymlora adapters; call asymlora.inject(model, config) first")
    return layers


def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (W0 ← W0 + s·B·A); inference then costs the base model's."""
    for _, layer in _require_layers(model):
        layer.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Undo :func:`merge` (W0 ← W0 − s·B·A), restoring W0 up to round-off in its dtype."""
    for _, layer in _require_layers(model):
        layer.unmerge()
    return model


def unload(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace every adapted layer by its plain base layer, merged (default) or not; returns the model.

    The result has no asymlora modules left; ``requires_grad`` of base parameters is left frozen.
    """
    for name, layer in _require_layers(model):
        if merge:
            layer.merge()
        elif layer.merged:
            layer.unmerge()
        _set_submodule(model, name, layer.base_layer)
    for attr in (CONFIG_ATTR, TRAIN_MODULES_ATTR):
        if attr in model.__dict__:
            object.__delattr__(model, attr)
    return model


@contextlib.contextmanager
def disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run the base model without its adapters inside the block (factors and trainability untouched)."""
    layers = _require_layers(model)
    previous = [layer.disabled for _, layer in layers]
    merged = [name for name, layer in layers if layer.merged]
    if merged:
        raise RuntimeError(f"cannot disable merged adapters ({merged[0]} …); call asymlora.unmerge(model) first")
    try:
        for _, layer in layers:
            layer.disabled = True
        yield model
    finally:
        for (_, layer), was in zip(layers, previous):
            layer.disabled = was
