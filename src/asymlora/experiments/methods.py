"""The methods an experiment compares: every asymlora factor policy of the paper's Tables 1, 5 and 10,
plus full fine-tuning, linear probing, and Hugging Face PEFT's LoRA as a cross-check.

A :class:`Method` knows how to turn a freshly loaded base model (with its task head) into the model
to train (:meth:`~Method.setup`), how to save what was trained and load it back onto a fresh base
(:meth:`~Method.save` / :meth:`~Method.load`), its display name in the paper's notation and its default
learning rate and sweep. One subclass per kind: :class:`AdapterMethod` (an asymlora preset),
:class:`FullFineTuning`, :class:`LinearProbe`, :class:`PeftLora`, and :class:`Untuned` (nothing trained: the
baseline row of the language-model tables).

Learning rates. The paper gives none for GLUE; LoRA's RoBERTa recipe uses 4e-4–5e-4 for adapters and
full fine-tuning uses 1e-5–5e-5. On the small encoders and short runs here the defaults are one step
higher: ``1e-3`` for every adapter method (sweep ``3e-4, 1e-3, 3e-3``), ``5e-5`` for full fine-tuning
(sweep ``2e-5, 5e-5, 1e-4``) and ``3e-3`` for the linear probe (sweep ``1e-3, 3e-3, 1e-2``). A grid
with ``sweep`` picks each method's value on the validation split (see :mod:`asymlora.experiments.sweep`).

Heads. Every method trains the task's *new* head modules in full (a head initialised for the task has to
be learned whatever adapts the rest): for adapter methods they are the config's ``train_modules``, for PEFT
``modules_to_save``. Language-model heads are pretrained, so there is none to add.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

import asymlora
from asymlora.atomic import atomic_write, atomic_write_json
from asymlora.config import DROPOUT_ON, PRESETS, AdapterConfig
from asymlora.models.heads import new_head_modules

ADAPTER_LRS = (3e-4, 1e-3, 3e-3)
FULL_FT_LRS = (2e-5, 5e-5, 1e-4)
PROBE_LRS = (1e-3, 3e-3, 1e-2)
TRAINABLE_FILE = "trainable.safetensors"
METHOD_FILE = "method.json"


class MethodError(ValueError):
    """An unknown method, or one used with settings it does not take."""


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters that train, by name."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


@dataclass(frozen=True)
class Method:
    """A way to fine-tune; subclasses say how (see the module doc)."""

    name: str
    lr: float = 1e-3
    lr_sweep: tuple[float, ...] = ADAPTER_LRS
    description: str = ""
    label: str | None = None  # short display name (else the paper notation)

    kind = "base"
    uses_rank = False
    trains = True  # False: nothing is trained; the run evaluates the base model as it is
    dropout_places: ClassVar[tuple[str, ...]] = ()  # where the method can apply adapter dropout (config.DROPOUT_ON)

    # --- names ------------------------------------------------------------------------------------
    @property
    def notation(self) -> str:
        """The paper's notation: ``B̂_0 A_rand`` etc., ``Full FT``, ``LP``."""
        raise NotImplementedError

    @property
    def title(self) -> str:
        """The row name without the rank: the short name, the paper's notation, or both (``B-only B̂_0 A_rand``)."""
        return self.label or self.notation

    def display(self, rank: int | None = None) -> str:
        """Row label, e.g. ``LoRA B̂_0 Â_km (r=8)``, ``B-only B̂_0 A_rand (r=16)``, ``B̂_0 A_V (r=8)``, ``Full FT``."""
        return f"{self.title} (r={rank})" if self.uses_rank and rank else self.title

    def what_trains(self) -> str:
        raise NotImplementedError

    # --- building, saving, loading ---------------------------------------------------------------
    def setup(self, model: nn.Module, *, rank: int | None, seed: int, targets: Sequence[str],
              head: Sequence[str] | None = None, dropout: float = 0.0, dropout_on: str = "input") -> nn.Module:
        """Prepare a fresh base model for training; ``head`` names its new head modules (default: a top-level
        classifier / score / head child, as Hugging Face classifiers have); ``dropout`` with probability p on
        ``dropout_on`` (methods whose :attr:`dropout_places` hold it). Returns the model to train."""
        if self.uses_rank and not rank:
            raise MethodError(f"method {self.name!r} needs a rank")
        head = tuple(head) if head is not None else new_head_modules(model)
        self.check_dropout(dropout, dropout_on)
        extra = {"dropout": dropout, "dropout_on": dropout_on} if self.dropout_places else {}
        return self._setup(model, rank=rank, seed=seed, targets=tuple(targets), head=head, **extra)

    def check_dropout(self, dropout: float, dropout_on: str) -> None:
        """Refuse adapter dropout this method cannot apply (none at all, or not on ``dropout_on``)."""
        if dropout and dropout_on not in self.dropout_places:
            where = f"only on {', '.join(self.dropout_places)}" if self.dropout_places else "no adapter dropout"
            raise MethodError(f"method {self.name!r} takes {where}; dropout {dropout:g} on {dropout_on!r} was asked "
                              "for (run it without --dropout, in a grid of its own)")

    def _setup(self, model: nn.Module, *, rank, seed, targets, head) -> nn.Module:
        raise NotImplementedError

    def save(self, model: nn.Module, folder: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        """Write what was trained to ``folder``; returns the weights file (whose size is reported). Default:
        the trainable parameters by name (``trainable.safetensors``) and ``method.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in trainable_state(model).items()}
        atomic_write(folder / TRAINABLE_FILE, lambda tmp: save_file(state, tmp, metadata={"method": self.name}))
        atomic_write_json(folder / METHOD_FILE, {"method": self.name, "kind": self.kind, "parameters": sorted(state),
                                                 "extra": extra or {}})
        return folder / TRAINABLE_FILE

    def load(self, base: nn.Module, folder: str | Path) -> nn.Module:
        """Put the trained parameters saved in ``folder`` onto a fresh base model; returns the model."""
        folder = Path(folder)
        meta = json.loads((folder / METHOD_FILE).read_text())
        if meta.get("method") != self.name:
            raise MethodError(f"{folder} holds a {meta.get('method')!r} result, not {self.name!r}")
        state = load_file(str(folder / TRAINABLE_FILE))
        params = dict(base.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise MethodError(f"{folder}: parameters {unknown[:3]} are not in this base model")
        for k, v in state.items():
            if params[k].shape != v.shape:
                raise MethodError(f"{folder}: {k} has shape {tuple(v.shape)}, the model {tuple(params[k].shape)}")
        with torch.no_grad():
            for k, v in state.items():
                params[k].copy_(v)
        return base


@dataclass(frozen=True)
class AdapterMethod(Method):
    """An asymlora preset (which factor trains, how each starts) injected into the targets."""

    preset: str = "lora"
    dropout_places = DROPOUT_ON

    kind = "adapter"
    uses_rank = True

    @property
    def notation(self) -> str:
        return AdapterConfig.preset(self.preset).notation

    @property
    def title(self) -> str:
        return f"{self.label} {self.notation}" if self.label else self.notation

    def what_trains(self) -> str:
        a, b = PRESETS[self.preset]
        parts = [f"{w} ({f.init})" for w, f in (("A", a), ("B", b)) if f.trainable]
        frozen = [f"{w} frozen {f.init}" for w, f in (("A", a), ("B", b)) if not f.trainable]
        return " + ".join(parts) + (f"; {', '.join(frozen)}" if frozen else "") + "; new head"

    def _setup(self, model, *, rank, seed, targets, head, dropout, dropout_on):
        cfg = AdapterConfig.preset(self.preset, rank=rank, seed=seed, targets=targets, train_modules=head,
                                   dropout=dropout, dropout_on=dropout_on)
        return asymlora.inject(model, cfg)

    def save(self, model, folder, *, extra=None) -> Path:
        Path(folder).mkdir(parents=True, exist_ok=True)
        asymlora.save_adapter(model, folder, extra=extra)
        return Path(folder) / "adapter.safetensors"

    def load(self, base, folder) -> nn.Module:
        return asymlora.load_adapter(base, folder)


@dataclass(frozen=True)
class FullFineTuning(Method):
    kind = "full-ft"

    @property
    def notation(self) -> str:
        return "Full FT"

    def what_trains(self) -> str:
        return "every parameter"

    def _setup(self, model, *, rank, seed, targets, head):
        for p in model.parameters():
            p.requires_grad_(True)
        return model


@dataclass(frozen=True)
class LinearProbe(Method):
    kind = "linear-probe"

    @property
    def notation(self) -> str:
        return "LP"

    def what_trains(self) -> str:
        return "the new task head only"

    def _setup(self, model, *, rank, seed, targets, head):
        if not head:
            raise MethodError("linear probing needs a new task head (a module called classifier, score or head); "
                              "this task's model has none")
        for p in model.parameters():
            p.requires_grad_(False)
        for name in head:
            for p in model.get_submodule(name).parameters():
                p.requires_grad_(True)
        return model


@dataclass(frozen=True)
class Untuned(Method):
    """The pretrained model as it is: nothing trains, no learning rate (the first row of Tables 6 and 8).

    Only for tasks whose head comes pretrained (a language model's): a new task head would be random."""

    kind = "untuned"
    trains = False

    @property
    def notation(self) -> str:
        return "W_0"

    def what_trains(self) -> str:
        return "nothing: the pretrained model evaluated as it is"

    def _setup(self, model, *, rank, seed, targets, head):
        if head:
            raise MethodError(f"method 'untuned' evaluates a pretrained model as it is, but this task's model has "
                              f"a new, randomly initialised head ({', '.join(head)}); use it with a language-model "
                              "task (causal-lm or seq2seq-lm head), or train the head with 'linear-probe'")
        for p in model.parameters():
            p.requires_grad_(False)
        return model


@dataclass(frozen=True)
class PeftLora(Method):
    """Hugging Face PEFT's LoRA, built with ``get_peft_model`` (needs the ``peft`` package)."""

    kind = "peft-lora"
    uses_rank = True
    dropout_places = ("input",)  # PEFT's lora_dropout acts on the layer input

    @property
    def notation(self) -> str:
        return "B̂_0 Â_km (PEFT)"

    def what_trains(self) -> str:
        return "PEFT LoRA A (kaiming) + B (zeros); new head"

    def _setup(self, model, *, rank, seed, targets, head, dropout, dropout_on):
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets), lora_dropout=dropout,
                         modules_to_save=list(head) or None, init_lora_weights=True, bias="none")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # PEFT draws its Kaiming A from the global generator
            return get_peft_model(model, cfg)

    def save(self, model, folder, *, extra=None) -> Path:
        Path(folder).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(folder), safe_serialization=True)
        return Path(folder) / "adapter_model.safetensors"

    def load(self, base, folder) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(folder))


def _adapter(name: str, description: str, label: str | None = None) -> AdapterMethod:
    return AdapterMethod(name=name, preset=name, lr=1e-3, lr_sweep=ADAPTER_LRS, description=description, label=label)


METHODS: dict[str, Method] = {
    m.name: m for m in (
        FullFineTuning("full-ft", lr=5e-5, lr_sweep=FULL_FT_LRS, label="Full FT",
                       description="full fine-tuning: every parameter of the model and the head"),
        Untuned("untuned", lr=0.0, lr_sweep=(), label="Untuned",
                description="the pretrained model as it is, nothing trained (a language model's baseline row)"),
        LinearProbe("linear-probe", lr=3e-3, lr_sweep=PROBE_LRS, label="LP",
                    description="linear probing: the new task head only, the rest frozen"),
        _adapter("lora", "classic LoRA: A Kaiming-uniform and B zero, both trained", label="LoRA"),
        PeftLora("peft-lora", lr=1e-3, lr_sweep=ADAPTER_LRS, label="PEFT LoRA",
                 description="Hugging Face PEFT's LoRA (get_peft_model), a cross-check of 'lora'"),
        _adapter("b-only", "the paper's choice: B trained from zero, A frozen random orthogonal", label="B-only"),
        _adapter("a-only", "the mirror image: A trained from zero, B frozen random orthogonal", label="A-only"),
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
    if name not in METHODS:
        close = name.lower().replace("_", "-")
        hint = f" (did you mean {close!r}?)" if close in METHODS else ""
        raise MethodError(f"unknown method {name!r}{hint}; choose one of: {', '.join(METHODS)}")
    return METHODS[name]


def method_table() -> list[dict[str, Any]]:
    """One row per method: name, paper notation, what trains, default lr and sweep (for docs and --help)."""
    return [{"name": m.name, "notation": m.notation, "trains": m.what_trains(), "lr": m.lr,
             "lr_sweep": list(m.lr_sweep), "description": m.description} for m in METHODS.values()]
