"""The real vision backbones: DINOv2-S's ONNX → transformers mapping, the EfficientNet-Lite0 loader and its
ImageNet behaviour, and a real smoke run (EfficientNet-Lite0's Conv2d adapters on ColoredMNIST)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_sample_images

import asymlora
from asymlora.data.mnist_domains import pooled_mnist
from asymlora.experiments.loader import Loader
from asymlora.experiments.run import run
from asymlora.experiments.spec import RunSpec
from asymlora.models.dinov2_onnx import PIN as DINO_PIN
from asymlora.models.dinov2_onnx import build_dinov2, onnx_backbone_features
from asymlora.models.efficientnet_lite import MEAN, STD, imagenet_efficientnet_lite0
from asymlora.models.image_transform import ImageTransform
from asymlora.sources import fetch_pin

pytestmark = pytest.mark.slow

# ImageNet-1k classes a photo of a Chinese temple may fairly be called.
BUILDINGS = {442: "bell cote", 497: "church", 538: "dome", 663: "monastery", 698: "palace", 832: "stupa",
             449: "boathouse", 483: "castle", 975: "lakeside"}


def test_dinov2_torch_features_match_onnxruntimes_backbone_output():
    images, _ = pooled_mnist(0)
    x = ImageTransform(size=224)(images[:2, None])  # two real digits, grey → RGB, ImageNet normalisation
    model = build_dinov2(fetch_pin(DINO_PIN))
    assert sum(p.numel() for p in model.parameters()) == 22_056_576
    with torch.no_grad():
        ours = model(pixel_values=x).last_hidden_state.numpy()
    theirs = onnx_backbone_features(fetch_pin(DINO_PIN), x.numpy())
    assert ours.shape == theirs.shape == (2, 257, 384)
    assert np.abs(ours - theirs).max() < 1e-4


def test_efficientnet_lite0_loads_strictly_and_names_a_temple_photo():
    model = imagenet_efficientnet_lite0()  # load_state_dict(strict=True) inside
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    china = torch.from_numpy(load_sample_images().images[0].copy()).permute(2, 0, 1)[None]
    x = ImageTransform(size=224, mean=MEAN, std=STD)(china)
    with torch.no_grad():
        top = model(pixel_values=x).logits.softmax(-1).topk(5)
    assert top.indices[0, 0].item() == 442  # bell cote
    assert top.values[0, 0].item() > 0.3
    assert sum(i in BUILDINGS for i in top.indices[0].tolist()) >= 4


def test_smoke_efficientnet_lite0_conv2d_adapters_on_colored_mnist(tmp_path):
    spec = RunSpec(task="colored-mnist", model="efficientnet-lite0", method="b-only", rank=4, seed=0, epochs=1,
                   batch_size=16, image_size=32, lrs=(3e-3,), checkpoint_every=0,
                   task_options=(("per_env", "60"),))
    result = run(spec, tmp_path, progress=False, echo=None)
    assert set(result["test_extra"]) == {"plus80", "minus90"}
    assert result["sizes"]["train"] == 43 and result["sizes"]["minus90"] == 60
    assert set(result["gap"]) == {"test", "plus80", "minus90"}
    meta = asymlora.checkpoint.read_meta(tmp_path / spec.relpath() / "adapter")
    assert len(meta["layers"]) == 31 and all(n.endswith(("_expand_conv", "_project_conv")) for n in meta["layers"])
    loader = Loader()
    fresh = spec.method_obj.load(loader.model(spec, loader.task(spec)).model, tmp_path / spec.relpath() / "adapter")
    assert all(isinstance(layer, asymlora.AdaptedConv2d) for _, layer in asymlora.adapted_layers(fresh))
