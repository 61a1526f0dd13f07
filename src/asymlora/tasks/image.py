"""Image classification, in domain and out of domain (DomainBed-style environments as extra test sets).

A split is an :class:`ImageSet`: uint8 images (N, C, H, W) and int64 labels. Encoding keeps the uint8
images (a fixed subset under ``limits.max_examples``) and the model's
:class:`~asymlora.models.image_transform.ImageTransform` (resize, channels, normalisation; its size set by
``limits.image_size``), applied per batch in :meth:`ImageDataset.collate` — so a split never sits in memory
as float at full resolution. Batches are ``{"pixel_values", "labels"}``, what Hugging Face image classifiers
take; the loss is the model's cross-entropy. Evaluation: accuracy (plus MCC and macro-F1 / F1) of the
arg-max logits.

Domain generalisation (the paper's §C.4): train on one environment; ``validation`` / ``test`` hold out parts of
it (in domain, ID); every other environment is an extra test set (out of domain, OOD).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from asymlora.data.metrics import classification_metrics
from asymlora.evaluation.predict import gathered_predictions
from asymlora.tasks.protocol import EvalContext, Evaluation, Limits, SplitsMixin, TaskProtocol, fingerprint_of, subset


@dataclass(frozen=True)
class ImageSet:
    """Images (uint8, N × C × H × W) and their class ids (int64, N)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: Sequence[int]) -> "ImageSet":
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx])


class ImageDataset(Dataset):
    """uint8 images transformed per batch by ``transform`` (the model's preprocessor)."""

    def __init__(self, images: ImageSet, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, index: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return {"pixel_values": self.transform(self.images.images[idx]), "labels": self.images.labels[idx]}


@dataclass
class ImageTask(SplitsMixin, TaskProtocol):
    """Fixed image splits (and environments as extra test sets) scored by accuracy."""

    name: str
    splits: dict[str, ImageSet]
    label_names: tuple[str, ...]
    extra_test_sets: dict[str, ImageSet] = field(default_factory=dict)
    source: str = ""
    description: str = ""

    head = "image-classification"
    primary_metric = "accuracy"

    def __post_init__(self) -> None:
        self.check_splits()
        if len(self.label_names) < 2:
            raise ValueError(f"image task {self.name!r} needs at least two label names")
        for name, part in {**self.splits, **self.extra_test_sets}.items():
            if len(part) and (int(part.labels.min()) < 0 or int(part.labels.max()) >= len(self.label_names)):
                raise ValueError(f"task {self.name!r}, {name}: labels outside 0..{len(self.label_names) - 1}")

    def head_options(self) -> dict[str, Any]:
        return {"num_labels": len(self.label_names), "label_names": tuple(self.label_names)}

    def encode(self, split: str, preprocessor: Any, limits: Limits) -> ImageDataset:
        part = self.part(split)
        keep = subset(range(len(part)), limits.max_examples, limits.subset_seed)
        if not keep:
            raise ValueError(f"task {self.name!r}: split {split!r} is empty")
        transform = preprocessor.with_size(limits.image_size) if hasattr(preprocessor, "with_size") else preprocessor
        return ImageDataset(part.take(keep), transform)

    def evaluate(self, model: Any, data: ImageDataset, ctx: EvalContext) -> Evaluation:
        predictions, labels = gathered_predictions(model, data, ctx, collate=data.collate)
        return Evaluation(classification_metrics(predictions, labels, num_labels=len(self.label_names)))

    def summary(self) -> dict[str, Any]:
        sets = {**self.splits, **self.extra_test_sets}
        return {"name": self.name, "head": self.head, "num_labels": len(self.label_names),
                "label_names": list(self.label_names), "primary_metric": self.primary_metric, "source": self.source,
                "sizes": {k: len(v) for k, v in sets.items()},
                "label_counts": {k: torch.bincount(v.labels, minlength=len(self.label_names)).tolist()
                                 for k, v in sets.items()},
                "fingerprint": fingerprint_of({k: [_digest(v)] for k, v in sets.items()})}


def _digest(part: ImageSet) -> str:
    """sha256 of a split's image bytes and labels (order included)."""
    h = hashlib.sha256(part.images.contiguous().numpy().tobytes())
    h.update(part.labels.contiguous().numpy().tobytes())
    return h.hexdigest()
