"""The small base models the fuzz cases are built on, and the fixed input each is run on.

``build(kind)`` gives the same weights every time (seeded), so the worker process that loads a case
rebuilds exactly the base model the original adapter was saved from. The ``other-*`` kinds are the
"other base models" a folder is wrongly loaded onto.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class FuzzNet(nn.Module):
    """A conv, Linear layers of different shapes and a head (as tests/conftest.py's TinyNet)."""

    def __init__(self, width: int = 24, hidden: int = 40, labels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.proj = nn.Linear(6 * 4 * 4, width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.classifier = nn.Linear(width, labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).flatten(1)
        h = self.proj(h)
        h = h + self.mlp(h)
        return self.classifier(h)


class EmbedNet(nn.Module):
    """An embedding, a Linear block and a head: token ids in, logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 16)
        self.proj = nn.Linear(16, 24)
        self.mlp = nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 24))
        self.classifier = nn.Linear(24, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.proj(self.embed(ids).mean(1))
        h = h + self.mlp(h)
        return self.classifier(h)


BUILDERS = {
    "net": lambda: FuzzNet(),
    "embed": lambda: EmbedNet(),
    "other-wide": lambda: FuzzNet(width=32),  # same names, other shapes
    "other-labels": lambda: FuzzNet(labels=5),  # another head
    "other-weights": lambda: FuzzNet(),  # same architecture, other pretrained weights (seed 1)
}
TARGETS = {"net": ["conv", "proj", "mlp.0", "mlp.2"], "embed": ["embed", "proj", "mlp.0", "mlp.2"]}


def build(kind: str) -> nn.Module:
    """The base model ``kind`` in eval mode, with fixed weights."""
    torch.manual_seed(1 if kind == "other-weights" else 0)
    return BUILDERS[kind]().eval()


def example_input(kind: str) -> torch.Tensor:
    """The fixed input the saved model and every loaded model are compared on."""
    g = torch.Generator().manual_seed(1)
    if kind == "embed":
        return torch.randint(0, 30, (5, 7), generator=g)
    return torch.randn(5, 3, 4, 4, generator=g)


def family(kind: str) -> str:
    """The input kind of a base model (``net`` or ``embed``)."""
    return "embed" if kind == "embed" else "net"
