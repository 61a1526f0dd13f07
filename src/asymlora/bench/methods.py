"""The configurations compared: the frozen floor, three PEFT peers and two asymlora policies.

Every configuration starts from a deep copy of the same base model, adapts the same layers at the
same rank r (alpha = 2r, the same dropout) and trains with AdamW at the same learning rate, except:

* ``floor``: no adapter and nothing trains. A forward hook passes every target layer's output through
  an identity that asks for its gradient, so the backward pass delivers ∂L/∂(output) to every layer
  an adapter would sit on (and no further than an adapter would need): the backward work that any
  adapter needs anyway. Its step time and memory are the floor.
* ``peft-lorafa``: PEFT LoRA with ``peft.optimizers.create_lorafa_optimizer`` (A frozen by name,
  B trained with LoRA-FA's projected AdamW).
* ``peft-vera``: PEFT VeRA at the same r (shared frozen random matrices, trained scaling vectors).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

import asymlora
from asymlora.config import AdapterConfig
from asymlora.inject import find_targets
from asymlora.layers import AdaptedLayer

from .models import BenchModel

__all__ = ["BENCH_CONFIGS", "EXTRA_CONFIGS", "LABELS", "Prepared", "prepare", "adapter_modules"]

# the configurations `asymlora bench` compares (not the experiment methods of asymlora.experiments.methods)
BENCH_CONFIGS = ("floor", "peft-lora", "peft-lorafa", "peft-vera", "asym-lora", "asym-b-only")
LABELS = {
    "floor": "frozen model, no adapter (floor)",
    "peft-lora": "PEFT LoRA",
    "peft-lorafa": "PEFT LoRA-FA",
    "peft-vera": "PEFT VeRA",
    "asym-lora": "asymlora LoRA",
    "asym-b-only": "asymlora B-only",
    "asym-b-only-projection": "asymlora B-only, dropout on A·x",
}
# timed beside BENCH_CONFIGS by the step section when dropout > 0 (dropout_on="projection")
EXTRA_CONFIGS = ("asym-b-only-projection",)


@dataclass
class Prepared:
    method: str
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    trainable: int
    hooks: list = field(default_factory=list)

    def remove_hooks(self) -> None:
        """Detach the floor's need-grad hooks from its copy of the model (a no-op for the other methods)."""
        for handle in self.hooks:
            handle.remove()
        self.hooks.clear()

    @property
    def label(self) -> str:
        return LABELS[self.method]


class _GradientSink(torch.autograd.Function):
    """Identity on a target layer's output that makes the backward pass compute ∂L/∂output there,
    without storing anything or accumulating a .grad into the (otherwise leaf) output tensor."""

    @staticmethod
    def forward(ctx, output, sink):
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad):
        return None, torch.zeros((), dtype=grad.dtype, device=grad.device)


def _peft_targets(spec: BenchModel) -> Any:
    return spec.targets if isinstance(spec.targets, str) else list(spec.targets)


def adapter_modules(model: nn.Module) -> dict[str, nn.Module]:
    """``{qualified name: adapted layer}`` for asymlora and PEFT layers (both expose ``base_layer``)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover
        BaseTunerLayer = ()  # type: ignore[assignment]
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, AdaptedLayer) or (BaseTunerLayer and isinstance(module, BaseTunerLayer)):
            found[name] = module
    return found


def _target_names(model: nn.Module, spec: BenchModel) -> list[str]:
    return find_targets(model, AdapterConfig(targets=spec.targets))


def prepare(method: str, base: nn.Module, spec: BenchModel, *, rank: int, dropout: float, lr: float = 1e-4,
            seed: int = 0) -> Prepared:
    """A deep copy of ``base`` set up for ``method``, in train mode, with its optimizer."""
    if method not in BENCH_CONFIGS + EXTRA_CONFIGS:
        raise ValueError(f"unknown method {method!r}; choose from {BENCH_CONFIGS + EXTRA_CONFIGS}")
    model = copy.deepcopy(base)
    for p in model.parameters():
        p.requires_grad_(False)
    alpha = 2 * rank
    hooks = []
    optimizer = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if method == "floor":
            modules = dict(model.named_modules())
            sink = torch.zeros((), device=next(model.parameters()).device, requires_grad=True)

            def need_grad(_module, _inputs, output):
                if isinstance(output, torch.Tensor) and output.is_floating_point() and not output.requires_grad:
                    return _GradientSink.apply(output, sink)
                return output

            hooks = [modules[n].register_forward_hook(need_grad) for n in _target_names(model, spec)]
        elif method.startswith("peft-"):
            from peft import LoraConfig, VeraConfig, get_peft_model

            if method == "peft-vera":
                config = VeraConfig(r=rank, target_modules=_peft_targets(spec), vera_dropout=dropout,
                                    projection_prng_key=seed, save_projection=True)
            else:
                config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=_peft_targets(spec))
            model = get_peft_model(model, config)
            if method == "peft-lorafa":
                from peft.optimizers import create_lorafa_optimizer

                optimizer = create_lorafa_optimizer(model, r=rank, lora_alpha=alpha, lr=lr)
        else:
            preset = "lora" if method == "asym-lora" else "b-only"
            on = "projection" if method == "asym-b-only-projection" else "input"
            asymlora.inject(model, asymlora.AdapterConfig.preset(preset, rank=rank, alpha=float(alpha),
                                                                 targets=spec.targets, dropout=dropout, seed=seed,
                                                                 dropout_on=on))
    trainable = [p for p in model.parameters() if p.requires_grad]
    if optimizer is None and trainable:
        optimizer = torch.optim.AdamW(trainable, lr=lr)
    model.train()
    return Prepared(method, model, optimizer, sum(p.numel() for p in trainable), hooks)
