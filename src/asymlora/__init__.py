"""asymlora: asymmetric low-rank adapters (Zhu et al., "Asymmetry in Low-Rank Adapters of Foundation
Models", ICML 2024).

An adapted weight is W0 + s·B·A: A (r × d_in) extracts features from the layer input, B (d_out × r)
maps them to the output. ``AdapterConfig.preset("b-only")`` trains B alone with A frozen to a random
orthogonal matrix — the paper's recommendation — and stores A as its seed.

The core (this namespace) depends on torch and safetensors only.
"""

from .checkpoint import CheckpointError, load_adapter, read_factors, save_adapter
from .combine import CombineError, combine
from .config import PRESETS, AdapterConfig, Factor
from .inject import adapted_layers, disabled, get_config, inject, merge, unload, unmerge
from .layers import AdaptedConv1D, AdaptedConv2d, AdaptedEmbedding, AdaptedLayer, AdaptedLinear
from .peft_interop import export_peft, import_peft
from .serving import MultiAdapterModel, ServingError, load_many
from .summary import summary, trainable_parameters
from .version import __version__

__all__ = [
    "AdapterConfig", "Factor", "PRESETS", "inject", "adapted_layers", "get_config", "merge", "unmerge",
    "unload", "disabled", "trainable_parameters", "summary", "save_adapter", "load_adapter",
    "read_factors", "export_peft", "import_peft", "CheckpointError", "AdaptedLayer", "AdaptedLinear",
    "AdaptedConv1D", "AdaptedConv2d", "AdaptedEmbedding", "combine", "CombineError", "load_many", "MultiAdapterModel",
    "ServingError", "__version__",
]
