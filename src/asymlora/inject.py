"""Finding target modules in any ``nn.Module``, wrapping them in place, and whole-model operations
(merge / unmerge / unload / disable).

Wrapping runs in three steps, so that nothing changes until everything has been checked:
:func:`plan_layers` chooses the layers and their rank and alpha from a config, :func:`build_layers`
makes the adapted layers (the model is not touched), and :func:`attach` puts them into the model.
:func:`inject` is the three in a row; loading a checkpoint checks the files between the second and
the third.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch.nn as nn

from .config import ALL_LINEAR, AdapterConfig
from .layers import AdaptedConv1D, AdaptedLayer, AdaptedLinear, layer_type
from .names import closest, name_matches, pattern_matches, unmatched

CONFIG_ATTR = "asymlora_config"
TRAIN_MODULES_ATTR = "asymlora_train_modules"

# Leaf names that "all-linear" treats as the output head (besides the model's own output embeddings):
# the heads of Hugging Face model classes (lm_head, classifier, score, qa_outputs, ...) and a few
# common names of task heads (head, pooler_head, output_projection).
HEAD_NAMES = ("lm_head", "classifier", "score", "head", "qa_outputs", "pooler_head", "output_projection")


@dataclass(frozen=True)
class LayerPlan:
    """One layer to adapt: its qualified name, the module there, the layer class, rank and alpha."""

    name: str
    module: nn.Module
    cls: type[AdaptedLayer]
    rank: int
    alpha: float


def _is_linear_like(module: nn.Module) -> bool:
    return AdaptedLinear.handles(module) or AdaptedConv1D.handles(module)


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


def _inside(name: str, outer: str) -> bool:
    return name == outer or name.startswith(outer + ".")


def find_targets(model: nn.Module, config: AdapterConfig, *, check_patterns: bool = True) -> list[str]:
    """Qualified names of the modules ``config.targets`` selects, with clear errors if none match
    (and, with ``check_patterns``, if an ``exclude`` entry matches no module)."""
    all_names = [n for n, _ in model.named_modules() if n]
    targets = config.targets
    if targets == ALL_LINEAR:
        heads = _output_head_names(model)
        chosen = [n for n, m in model.named_modules()
                  if n and _is_linear_like(m) and not any(_inside(n, h) for h in heads)]
        if not chosen:
            raise ValueError("targets='all-linear' found no nn.Linear / Conv1D layers outside the output head")
    elif isinstance(targets, str):
        chosen = [n for n in all_names if re.fullmatch(targets, n)]
        if not chosen:
            raise ValueError(f"target regex {targets!r} matches no module (it must match a whole qualified "
                             f"name). Closest module names: {closest(targets, all_names)}")
    else:
        chosen = []
        for t in targets:
            hits = [n for n in all_names if name_matches(n, t)]
            if not hits:
                raise ValueError(f"target {t!r} matches no module. Closest module names: {closest(t, all_names)}. "
                                 "A target matches a qualified name exactly or as a dotted suffix.")
            chosen.extend(h for h in hits if h not in chosen)
    for pattern in unmatched(config.exclude, all_names) if check_patterns else ():
        raise ValueError(f"exclude entry {pattern!r} matches no module (a typo?). Closest module names: "
                         f"{closest(pattern, all_names)}")
    trained = set(find_train_modules(model, config.train_modules)) if config.train_modules else set()
    chosen = [n for n in chosen
              if not any(pattern_matches(n, e) for e in config.exclude)
              and not any(_inside(n, t) for t in trained)]
    if not chosen:
        raise ValueError("every target was removed by `exclude` / `train_modules`; nothing to adapt")
    return chosen


def find_train_modules(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Qualified names of the modules trained in full (outermost matches of ``patterns``)."""
    all_names = [n for n, _ in model.named_modules() if n]
    found: list[str] = []
    for p in patterns:
        hits = [n for n in all_names if name_matches(n, p)]
        if not hits:
            raise ValueError(f"train_modules entry {p!r} matches no module. "
                             f"Closest module names: {closest(p, all_names)}")
        # keep only outermost matches (a matched module's children train with it)
        for h in hits:
            if h not in found and not any(h.startswith(f + ".") for f in found):
                found.append(h)
    return found


def _lookup(name: str, pattern_map: Mapping, default):
    for pattern, value in pattern_map.items():
        if pattern_matches(name, pattern):
            return value
    return default


def plan_layers(model: nn.Module, config: AdapterConfig, *, check_patterns: bool = True) -> list[LayerPlan]:
    """The layers ``config`` adapts in ``model``, each with its class, rank and alpha; the model is not touched.

    Raises ``ValueError`` / ``TypeError`` for targets that match nothing or cannot be adapted and, with
    ``check_patterns``, for ``exclude`` / ``rank_pattern`` / ``alpha_pattern`` entries that match
    nothing (a typo would otherwise be ignored; checkpoints written before this check are loaded
    without it).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if has_adapters(model):
        raise ValueError("this model already has asymlora adapters; call asymlora.unload(model) first, "
                         "or inject into a fresh copy of the base model")
    names = find_targets(model, config, check_patterns=check_patterns)
    for what, patterns in (("rank_pattern", config.rank_pattern), ("alpha_pattern", config.alpha_pattern)):
        for pattern in unmatched(list(patterns), names) if check_patterns else ():
            raise ValueError(f"{what} key {pattern!r} matches no adapted layer (a typo?). Closest adapted "
                             f"layers: {closest(pattern, names)}")
    sizes = {}
    for name in names:
        rank = _lookup(name, config.rank_pattern, config.rank)
        sizes[name] = (rank, _lookup(name, config.alpha_pattern, config.alpha_for(rank)))
    return plan_named(model, sizes)


def plan_named(model: nn.Module, sizes: Mapping[str, tuple[int, float]]) -> list[LayerPlan]:
    """The plan for adapting exactly the modules named in ``sizes`` (``{name: (rank, alpha)}``)."""
    if has_adapters(model):
        raise ValueError("this model already has asymlora adapters; call asymlora.unload(model) first, "
                         "or inject into a fresh copy of the base model")
    modules = dict(model.named_modules())
    plan = []
    for name, (rank, alpha) in sizes.items():
        if name not in modules or not name:
            raise ValueError(f"the model has no module {name!r}. Closest module names: {closest(name, list(modules))}")
        module = modules[name]
        plan.append(LayerPlan(name, module, layer_type(module, name), rank, float(alpha)))
    return plan


def build_layers(plan: Sequence[LayerPlan], config: AdapterConfig) -> dict[str, AdaptedLayer]:
    """The adapted layers of ``plan`` (their factors initialised); the model is not touched."""
    layers = {}
    for p in plan:
        try:
            layers[p.name] = p.cls(p.module, name=p.name, rank=p.rank, alpha=p.alpha, a=config.a, b=config.b,
                                   seed=config.seed, scaling=config.scaling, dropout=config.dropout,
                                   dropout_on=config.dropout_on)
        except ValueError as err:
            raise ValueError(f"{p.name}: {err}") from None
    return layers


def attach(model: nn.Module, config: AdapterConfig, layers: Mapping[str, AdaptedLayer],
           train_modules: Sequence[str]) -> nn.Module:
    """Put ``layers`` into ``model`` and set what trains; the only step that changes the model.

    Every existing parameter is frozen; then the adapters' trainable factors and the parameters of
    ``train_modules`` (qualified names) are the only ones with ``requires_grad=True``.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    for name, layer in layers.items():
        set_submodule(model, name, layer)
    for name in train_modules:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(True)
    object.__setattr__(model, CONFIG_ATTR, config)
    object.__setattr__(model, TRAIN_MODULES_ATTR, tuple(train_modules))
    return model


def inject(model: nn.Module, config: AdapterConfig) -> nn.Module:
    """Wrap every target of ``model`` in an adapted layer, in place, and return ``model``.

    Every existing parameter is frozen; then the adapters' trainable factors and the parameters of
    ``config.train_modules`` are the only ones with ``requires_grad=True``. Each adapted layer starts in
    the training mode of the module it wraps. A failing ``inject`` leaves the model untouched.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"inject expects a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, AdapterConfig):
        raise TypeError(f"inject expects an asymlora.AdapterConfig, got {type(config).__name__}")
    plan = plan_layers(model, config)
    train_modules = find_train_modules(model, config.train_modules)
    layers = build_layers(plan, config)
    warn_rank_above_dims(layers)
    return attach(model, config, layers, train_modules)


def warn_rank_above_dims(layers: Mapping[str, AdaptedLayer]) -> None:
    """Warn when a layer's rank r exceeds m = min(d_in, d_out): rank(s·B·A) ≤ m whatever r, so the extra ranks
    cost up to (r − m)·(d_in + d_out) parameters and add nothing the update can express. One warning for all
    such layers, naming the first three."""
    over = [(name, layer.rank, min(layer.d_in, layer.d_out)) for name, layer in layers.items()
            if layer.rank > min(layer.d_in, layer.d_out)]
    if over:
        shown = ", ".join(f"{n} (r={r} > {m})" for n, r, m in over[:3])
        more = f" and {len(over) - 3} more" if len(over) > 3 else ""
        warnings.warn(f"rank above min(d_in, d_out) in {len(over)} layer(s): {shown}{more}. The update B·A cannot "
                      f"have a rank above min(d_in, d_out), so the extra ranks only cost parameters; lower the rank "
                      f"(or set rank_pattern for these layers)", UserWarning, stacklevel=3)


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule at qualified ``name`` by ``new``."""
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def forget_adapters(model: nn.Module) -> None:
    """Drop the config and train-module names :func:`attach` recorded on ``model``."""
    for attr in (CONFIG_ATTR, TRAIN_MODULES_ATTR):
        if attr in model.__dict__:
            object.__delattr__(model, attr)


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
        set_submodule(model, name, layer.base_layer)
    forget_adapters(model)
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
