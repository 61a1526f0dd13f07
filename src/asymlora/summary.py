"""Parameter counts and a per-layer table of an adapted model."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from .inject import adapted_layers, get_train_modules


def trainable_parameters(model: nn.Module) -> int:
    """Number of scalar parameters with ``requires_grad=True``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class LayerRow:
    name: str
    kind: str
    d_in: int
    d_out: int
    rank: int
    scale: float
    a: str
    b: str
    trainable: int
    frozen_adapter: int


@dataclass
class AdapterSummary:
    """What :func:`summary` returns; ``str()`` renders it as a table."""

    rows: list[LayerRow] = field(default_factory=list)
    adapter_trainable: int = 0
    train_modules: tuple[str, ...] = ()
    train_modules_params: int = 0
    total_trainable: int = 0
    total_params: int = 0

    def __str__(self) -> str:
        header = ("layer", "type", "d_in→d_out", "r", "s", "A", "B", "trained", "frozen")
        body = [(r.name, r.kind, f"{r.d_in}→{r.d_out}", str(r.rank), f"{r.scale:g}", r.a, r.b,
                 f"{r.trainable:,}", f"{r.frozen_adapter:,}") for r in self.rows]
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out = [line(header), line(["-" * w for w in widths]), *(line(b) for b in body)]
        pct = 100.0 * self.total_trainable / max(1, self.total_params)
        out.append("")
        out.append(f"adapter layers: {len(self.rows)}   adapter parameters trained: {self.adapter_trainable:,}")
        if self.train_modules:
            out.append(f"trained in full: {', '.join(self.train_modules)} ({self.train_modules_params:,} parameters)")
        out.append(f"trainable: {self.total_trainable:,} of {self.total_params:,} ({pct:.3f}%)")
        return "\n".join(out)


def _describe(layer, which: str) -> str:
    f = layer.factors[which]
    return f"{f.init}{'*' if f.trainable else ' (frozen)'}"


def summary(model: nn.Module) -> AdapterSummary:
    """Per adapted layer: shapes, rank, scale, each factor's init and whether it trains (``*``), counts."""
    s = AdapterSummary()
    for name, layer in adapted_layers(model):
        trained = sum(layer.factor(w).numel() for w in "AB" if layer.is_trainable(w))
        frozen = sum(layer.factor(w).numel() for w in "AB" if not layer.is_trainable(w))
        s.rows.append(LayerRow(name, layer.kind, layer.d_in, layer.d_out, layer.rank, layer.scale,
                               _describe(layer, "A"), _describe(layer, "B"), trained, frozen))
        s.adapter_trainable += trained
    s.train_modules = get_train_modules(model)
    s.train_modules_params = sum(p.numel() for n in s.train_modules
                                 for p in model.get_submodule(n).parameters() if p.requires_grad)
    s.total_trainable = trainable_parameters(model)
    s.total_params = sum(p.numel() for p in model.parameters())
    return s
