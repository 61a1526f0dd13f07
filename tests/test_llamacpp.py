"""llama.cpp applies an exported B-only adapter as asymlora does (scripts/verify_llamacpp.py, small settings).

Runs only where llama-cpp-python is installed and a llama.cpp source folder with ``convert_lora_to_gguf.py`` is
found ($LLAMA_CPP_DIR, or where ``scripts/build_llamacpp.sh`` puts it by default); neither is a dependency.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("transformers")

from asymlora.sources.fetch import cache_dir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "verify_llamacpp.py"
DEFAULT_DIR = cache_dir() / "llama-cpp-python" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
LLAMA_CPP_DIR = Path(os.environ.get("LLAMA_CPP_DIR", DEFAULT_DIR))

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (LLAMA_CPP_DIR / "convert_lora_to_gguf.py").is_file(),
                                 reason="no llama.cpp source folder (set LLAMA_CPP_DIR; scripts/build_llamacpp.sh)")]


def test_llamacpp_applies_the_exported_b_only_adapter(tmp_path):
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(SCRIPT), "--llama-cpp-dir", str(LLAMA_CPP_DIR), "--steps", "6", "--prompts", "3",
           "--rank", "8", "--lr", "5e-3", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["passed"] is True
    # the same 4-bit weights on both sides: the base models agree on nearly every argmax
    assert result["base"]["top1_agreement"] >= 0.9
    assert result["adapted"]["top1_agreement"] >= 0.9
    # the adapter moves the model well beyond the two runtimes' rounding difference
    assert result["adapter_effect"]["mean_kl_nats"] > 5 * result["base"]["mean_kl_nats"]
    assert result["shift"]["relative_error"] <= 0.25 and result["shift"]["cosine"] >= 0.97
    # a wrong scale is caught: ‖2Δ − Δ‖/‖Δ‖ = 1 and ‖Δ/2 − Δ‖/‖Δ‖ = 0.5, up to the rounding
    controls = result["wrong_scale_controls"]
    assert controls["scale 2"]["relative_error"] == pytest.approx(1.0, abs=0.25)
    assert controls["scale 0.5"]["relative_error"] == pytest.approx(0.5, abs=0.15)
