"""The methods an experiment compares: every asymlora factor policy of the paper's Tables 1, 5 and 10,
plus full fine-tuning, linear probing, and Hugging Face PEFT's LoRA as a cross-check.

A :class:`Method` knows how to turn a freshly loaded base model (with its task head) into the model
to train, how to save what was trained, how to load it back onto a fresh base, its display name in the
paper's notation and its default learning rate and sweep.

Learning rates. The paper gives none for GLUE; LoRA's RoBERTa recipe uses 4e-4–5e-4 for adapters and
full fine-tuning uses 1e-5–5e-5. On the small encoders and short runs here the defaults are one step
higher: ``1e-3`` for every adapter method (sweep ``3e-4, 1e-3, 3e-3``), ``5e-5`` for full fine-tuning
(sweep ``2e-5, 5e-5, 1e-4``) and ``3e-3`` for the linear probe (sweep ``1e-3, 3e-3, 1e-2``). A grid
with ``sweep`` picks each method's value on the validation split (see :mod:`asymlora.experiments.sweep`).

Heads. Every method trains the task head in full (a new head has to be learned whatever adapts the
encoder): for adapter methods it is the config's ``train_modules``, for PEFT ``modules_to_save``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

import asymlora
from asymlora.atomic import atomic_write, atomic_write_json
from asymlora.config import PRESETS, AdapterConfig

ADAPTER_LRS = (3e-4, 1e-3, 3e-3)
FULL_FT_LRS = (2e-5, 5e-5, 1e-4)
PROBE_LRS = (1e-3, 3e-3, 1e-2)
KINDS = ("adapter", "full-ft", "linear-probe", "peft-lora")
# Leaf names of task heads on Hugging Face models (the last one present is used).
HEAD_NAMES = ("classifier", "score", "head", "qa_outputs", "lm_head")
TRAINABLE_FILE = "trainable.safetensors"
METHOD_FILE = "method.json"


class MethodError(ValueError):
    """An unknown method, or one used with settings it does not take."""


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # one of KINDS
    preset: str | None = None  # the asymlora preset for kind "adapter"
    lr: float = 1e-3
    lr_sweep: tuple[float, ...] = ADAPTER_LRS
    description: str = ""
    label: str | None = None  # short display name (else the paper notation)

    # --- names ------------------------------------------------------------------------------------
    @property
    def uses_rank(self) -> bool:
        return self.kind in ("adapter", "peft-lora")

    @property
    def notation(self) -> str:
        """The paper's notation: ``B̂_0 A_rand`` etc., ``Full FT``, ``LP``."""
        if self.kind == "adapter":
            return AdapterConfig.preset(self.preset).notation
        return {"full-ft": "Full FT", "linear-probe": "LP", "peft-lora": "B̂_0 Â_km (PEFT)"}[self.kind]

    def display(self, rank: int | None = None) -> str:
        """Row label, e.g. ``LoRA (r=8)``, ``B̂_0 A_rand (r=16)``, ``Full FT``."""
        base = self.label or self.notation
        return f"{base} (r={rank})" if self.uses_rank and rank else base

    def what_trains(self) -> str:
        if self.kind == "adapter":
            a, b = PRESETS[self.preset]
            parts = [f"{w} ({f.init})" for w, f in (("A", a), ("B", b)) if f.trainable]
            frozen = [f"{w} frozen {f.init}" for w, f in (("A", a), ("B", b)) if not f.trainable]
            return " + ".join(parts) + (f"; {', '.join(frozen)}" if frozen else "") + "; head"
        return {"full-ft": "every parameter", "linear-probe": "the task head only",
                "peft-lora": "PEFT LoRA A (kaiming) + B (zeros); head"}[self.kind]

    # --- building ---------------------------------------------------------------------------------
    def setup(self, model: nn.Module, *, rank: int | None, seed: int, targets: Sequence[str],
              head: Sequence[str] | None = None) -> nn.Module:
        """Prepare a fresh base model (with its task head) for training; returns the model to train."""
        head = tuple(head) if head is not None else head_modules(model)
        if self.uses_rank and not rank:
            raise MethodError(f"method {self.name!r} needs a rank")
        if self.kind == "adapter":
            cfg = AdapterConfig.preset(self.preset, rank=rank, seed=seed, targets=tuple(targets), train_modules=head)
            return asymlora.inject(model, cfg)
        if self.kind == "full-ft":
            for p in model.parameters():
                p.requires_grad_(True)
            return model
        if self.kind == "linear-probe":
            if not head:
                raise MethodError("linear probing needs a task head (a module called classifier, score or head)")
            for p in model.parameters():
                p.requires_grad_(False)
            for name in head:
                for p in model.get_submodule(name).parameters():
                    p.requires_grad_(True)
            return model
        if self.kind == "peft-lora":
            from peft import LoraConfig, get_peft_model

            cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets), lora_dropout=0.0,
                             modules_to_save=list(head) or None, init_lora_weights=True, bias="none")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # PEFT draws its Kaiming A from the global generator
                return get_peft_model(model, cfg)
        raise MethodError(f"unknown method kind {self.kind!r}")

    def save(self, model: nn.Module, folder: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        """Write what was trained to ``folder``; returns the weights file (whose size is reported)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.kind == "adapter":
            asymlora.save_adapter(model, folder, extra=extra)
            return folder / "adapter.safetensors"
        if self.kind == "peft-lora":
            model.save_pretrained(str(folder), safe_serialization=True)
            return folder / "adapter_model.safetensors"
        from safetensors.torch import save_file

        from asymlora.train import trainable_state

        state = {k: v.contiguous() for k, v in trainable_state(model).items()}
        atomic_write(folder / TRAINABLE_FILE, lambda tmp: save_file(state, tmp, metadata={"method": self.name}))
        atomic_write_json(folder / METHOD_FILE, {"method": self.name, "kind": self.kind, "parameters": sorted(state),
                                                 "extra": extra or {}})
        return folder / TRAINABLE_FILE

    def load(self, base: nn.Module, folder: str | Path) -> nn.Module:
        """Put the trained parameters saved in ``folder`` onto a fresh base model; returns the model."""
        folder = Path(folder)
        if self.kind == "adapter":
            return asymlora.load_adapter(base, folder)
        if self.kind == "peft-lora":
            from peft import PeftModel

            return PeftModel.from_pretrained(base, str(folder))
        from safetensors.torch import load_file

        meta = json.loads((folder / METHOD_FILE).read_text())
        if meta.get("method") != self.name:
            raise MethodError(f"{folder} holds a {meta.get('method')!r} result, not {self.name!r}")
        state = load_file(str(folder / TRAINABLE_FILE))
        params = dict(base.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise MethodError(f"{folder}: parameters {unknown[:3]} are not in this base model")
        with torch.no_grad():
            for k, v in state.items():
                if params[k].shape != v.shape:
                    raise MethodError(f"{folder}: {k} has shape {tuple(v.shape)}, the model {tuple(params[k].shape)}")
                params[k].copy_(v)
        return base


def head_modules(model: nn.Module) -> tuple[str, ...]:
    """The task head of a Hugging Face model: a top-level child called classifier / score / head …"""
    children = dict(model.named_children())
    for name in HEAD_NAMES:
        if name in children:
            return (name,)
    return ()


def _adapter(name: str, description: str, label: str | None = None) -> Method:
    return Method(name=name, kind="adapter", preset=name, lr=1e-3, lr_sweep=ADAPTER_LRS,
                  description=description, label=label)


METHODS: dict[str, Method] = {
    m.name: m for m in (
        Method("full-ft", "full-ft", lr=5e-5, lr_sweep=FULL_FT_LRS, label="Full FT",
               description="full fine-tuning: every parameter of the encoder and the head"),
        Method("linear-probe", "linear-probe", lr=3e-3, lr_sweep=PROBE_LRS, label="LP",
               description="linear probing: the task head only, the encoder frozen"),
        _adapter("lora", "classic LoRA: A Kaiming-uniform and B zero, both trained", label="LoRA"),
        Method("peft-lora", "peft-lora", lr=1e-3, lr_sweep=ADAPTER_LRS, label="PEFT LoRA",
               description="Hugging Face PEFT's LoRA (get_peft_model), a cross-check of 'lora'"),
        _adapter("b-only", "the paper's choice: B trained from zero, A frozen random orthogonal"),
        _adapter("a-only", "the mirror image: A trained from zero, B frozen random orthogonal"),
        _adapter("b-only-svd", "B trained from zero, A frozen to the top right singular vectors of W0"),
        _adapter("b-only-kaiming", "B trained from zero, A frozen Kaiming-uniform"),
        _adapter("a-only-svd", "A trained from zero, B frozen to the top left singular vectors of W0"),
        _adapter("a-only-kaiming", "A trained from zero, B frozen Kaiming-uniform"),
        _adapter("lora-svd", "both trained: A from the top right singular vectors of W0, B from zero"),
        _adapter("lora-orthogonal", "both trained: A random orthogonal, B from zero"),
        _adapter("lora-b-svd", "both trained: B from the top left singular vectors of W0, A from zero"),
        _adapter("lora-b-orthogonal", "both trained: B random orthogonal, A from zero"),
        _adapter("lora-b-kaiming", "both trained: B Kaiming-uniform, A from zero"),
    )
}
# Order of rows in reports: the paper's Table 1 first, then Tables 5/10's variants.
ORDER = tuple(METHODS)


def get_method(name: str) -> Method:
    key = name.lower().replace("_", "-")
    if key not in METHODS:
        raise MethodError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[key]


def method_table() -> list[dict[str, Any]]:
    """One row per method: name, paper notation, what trains, default lr and sweep (for docs and --help)."""
    return [{"name": m.name, "notation": m.notation, "trains": m.what_trains(), "lr": m.lr,
             "lr_sweep": list(m.lr_sweep), "description": m.description} for m in METHODS.values()]
