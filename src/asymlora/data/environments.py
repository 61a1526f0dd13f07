"""Environments → an image task: the paper's domain-generalisation protocol (§C.4) and DomainBed's leave-one-out.

Every environment e (a set of images with labels) is split once, with a seeded permutation, into an *in* part
(80 %) and an *out* part (20 %), as DomainBed and the paper do (``holdout=0.2``). Two protocols:

- **single source** (the paper's, the default): train on one environment T.
  ``train`` = in(T) less a validation slice, ``validation`` = that slice (``val_fraction`` of in(T), what the
  learning rate and epoch are chosen on), ``test`` = out(T) (in domain, ID), and every other environment,
  whole, is an extra test set (out of domain, OOD).
- **leave one out** (DomainBed's): train on every environment but L. ``train`` / ``validation`` = the pooled
  in parts of the others (less / the validation slice), ``test`` = their pooled out parts (ID), and L, whole,
  is the one extra test set (OOD).

``per_env`` keeps a fixed subset of each environment *before* the split (the first N of a seeded
permutation: the same examples for every method and seed), for CPU runs.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from asymlora.data.task import DataError
from asymlora.tasks.image import ImageSet, ImageTask

HOLDOUT = 0.2
VAL_FRACTION = 0.1


def permutation(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def cat(parts: Sequence[ImageSet]) -> ImageSet:
    return ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))


def in_out(env: ImageSet, seed: int, holdout: float = HOLDOUT) -> tuple[ImageSet, ImageSet]:
    """(in, out): a seeded split of one environment, ``round(holdout · n)`` examples out."""
    order = permutation(len(env), seed).tolist()
    n_out = int(round(holdout * len(env)))
    return env.take(sorted(order[n_out:])), env.take(sorted(order[:n_out]))


def train_val(part: ImageSet, seed: int, val_fraction: float = VAL_FRACTION) -> tuple[ImageSet, ImageSet]:
    order = permutation(len(part), seed + 1).tolist()
    n_val = max(1, int(round(val_fraction * len(part))))
    return part.take(sorted(order[n_val:])), part.take(sorted(order[:n_val]))


def resolve_env(name: str | int, names: Sequence[str], what: str) -> str:
    """An environment by its name (``rot15``) or the one name it ends (``15``)."""
    key = str(name).strip()
    if key in names:
        return key
    ends = [n for n in names if key and n.endswith(key) and not n[:-len(key)][-1:].isdigit()]
    if len(ends) == 1:
        return ends[0]
    raise DataError(f"{what}: no environment {name!r}; the environments are {', '.join(names)}")


def environment_task(name: str, envs: Mapping[str, ImageSet], label_names: Sequence[str], *, train_env: str | None,
                     leave_out: str | None = None, seed: int = 0, holdout: float = HOLDOUT,
                     val_fraction: float = VAL_FRACTION, source: str = "", description: str = "") -> ImageTask:
    """The image task of one protocol over ``envs`` (see the module doc); ``train_env`` or ``leave_out``."""
    names = list(envs)
    if leave_out is not None and train_env is not None:
        raise DataError(f"task {name!r}: give train_env (single source) or leave_out (leave one out), not both")
    splits = {n: in_out(envs[n], seed + 1000 * i, holdout) for i, n in enumerate(names)}
    if leave_out is not None:
        held = resolve_env(leave_out, names, f"task {name!r}")
        sources = [n for n in names if n != held]
        tr, va = train_val(cat([splits[n][0] for n in sources]), seed, val_fraction)
        test, extra = cat([splits[n][1] for n in sources]), {held: envs[held]}
        protocol = f"leave one out: train on {', '.join(sources)}, OOD = {held}"
    else:
        src = resolve_env(train_env if train_env is not None else names[0], names, f"task {name!r}")
        tr, va = train_val(splits[src][0], seed, val_fraction)
        test, extra = splits[src][1], {n: envs[n] for n in names if n != src}
        protocol = f"single source: train on {src} (ID = its held-out {holdout:.0%}), OOD = {', '.join(extra)}"
    return ImageTask(name=name, splits={"train": tr, "validation": va, "test": test}, label_names=tuple(label_names),
                     extra_test_sets=extra, source=source, description=f"{description}; {protocol}".strip("; "))
