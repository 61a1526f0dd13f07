"""The example scripts in examples/ run as a user runs them (small settings) and print what they promise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run_example(name: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_trainer_example_on_minilm(tmp_path):
    out = run_example("trainer_sentiment.py", "--out", str(tmp_path), "--train-examples", "64", "--epochs", "1",
                      "--save-steps", "1")
    assert out["steps"] == 2 and out["reloaded_predictions_equal"] is True
    assert out["test_examples"] == 956 and 0.3 < out["test_accuracy"] < 1.0
    assert out["checkpoint_model_bytes"] < 0.01 * out["full_model_bytes"]  # B and the classifier only
    assert out["trainable_parameters"] == 37634  # B-only r=8 on 6 layers' query and value + the classifier


def test_sft_example_on_smollm2(tmp_path):
    pytest.importorskip("trl")
    out = run_example("sft_instructions.py", "--out", str(tmp_path), "--steps", "2", "--val-examples", "24",
                      "--save-steps", "1")
    assert out["steps"] == 2 and out["reloaded_logits_equal"] is True
    assert out["val_loss_after"] < out["val_loss_before"]
    assert out["trainable_parameters"] == 30 * 32 * (576 + 192)  # B of q (576 out) and v (192 out), r=32, 30 layers
