"""The preprocessor of an image model: uint8 images in, the normalised float tensor the model expects out.

For a batch of uint8 images x ∈ {0..255}^(N×C×H×W)::

    x' = resize(x / 255, (S, S))                 bilinear, antialiased, S = ``size``
    x' = repeat(x', channels)  if C = 1          grey images given the channels the backbone expects
    x' = [x', 0 …]             if 1 < C < channels  missing channels black (ColoredMNIST's red/green → RGB)
    x' = x'[:, :channels]      if C > channels
    y  = (x' − mean) / std                       per channel

It is the image counterpart of a tokenizer: the model loader returns it beside the model, and an image task
calls it once per split when encoding (so training reads ready tensors). ``size`` may be overridden per run
(``--image-size``, small inputs on a CPU: ViTs interpolate their position embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageTransform:
    size: int = 224
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    @property
    def channels(self) -> int:
        return len(self.mean)

    def __post_init__(self) -> None:
        if int(self.size) < 1:
            raise ValueError(f"image size must be ≥ 1, got {self.size}")
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError(f"mean {tuple(self.mean)} and std {tuple(self.std)} must be per-channel, std > 0")

    def with_size(self, size: int | None) -> "ImageTransform":
        return self if size is None else replace(self, size=int(size))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        x = images.float() / 255.0
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        c = x.shape[1]
        if c == 1 and self.channels > 1:
            x = x.expand(-1, self.channels, -1, -1)
        elif c < self.channels:
            x = torch.cat([x, x.new_zeros(x.shape[0], self.channels - c, *x.shape[2:])], dim=1)
        elif c > self.channels:
            x = x[:, :self.channels]
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()

    def to_dict(self) -> dict:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std)}
