"""Loading causal LMs by folder (a tiny Llama saved in the test), offline failures, adapter folders."""

from __future__ import annotations

import json
import time

import pytest
import torch
from conftest import tiny_llama_folder

import asymlora
from asymlora.models import causal_lm
from asymlora.models.registry import ModelError


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return tiny_llama_folder(tmp_path_factory.mktemp("tiny-llama"))


def test_folder_loads_as_causal_lm(tiny_folder):
    model, tok = causal_lm.load_causal_lm(tiny_folder)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert model.dtype == torch.float32 and model.config.hidden_size == 16
    assert tok("hello world")["input_ids"] == [2, 3]
    again, none = causal_lm.load_causal_lm(str(tiny_folder), tokenizer=False, dtype=torch.bfloat16)
    assert none is None and again.dtype == torch.bfloat16
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a.to(torch.bfloat16), b)


def test_bad_names_fail_with_a_clear_message(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="without config.json"):
        causal_lm.load_causal_lm(tmp_path / "empty")
    with pytest.raises(ModelError, match="not a model folder"):
        causal_lm.load_causal_lm(str(tmp_path / "missing"))


@pytest.mark.parametrize("flag", ["ASYMLORA_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_hub_name_fails_fast(monkeypatch, tmp_path, flag):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    monkeypatch.delenv("ASYMLORA_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(flag, "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match="offline") as err:
        causal_lm.load_causal_lm("no-such-org/no-such-model")
    assert "smollm2" in str(err.value)
    assert time.perf_counter() - t0 < 20  # no network retries (they take ~50 s); a loose bound, not a benchmark


def test_adapter_folders_of_both_formats(tiny_folder, tmp_path):
    model, tok = causal_lm.load_causal_lm(tiny_folder)
    ids = torch.tensor([tok("hello world A")["input_ids"]])
    base = model(ids).logits
    cfg = asymlora.AdapterConfig.preset("b-only", rank=2, alpha=4, targets=["q_proj", "v_proj"], seed=0)
    adapted = asymlora.inject(model, cfg)
    with torch.no_grad():
        for _, layer in asymlora.adapted_layers(adapted):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=torch.Generator().manual_seed(1)))
    want = adapted(ids).logits
    assert not torch.allclose(want, base)
    asymlora.save_adapter(adapted, tmp_path / "ours")
    asymlora.export_peft(adapted, tmp_path / "peft")
    assert causal_lm.adapter_format(tmp_path / "ours") == "asymlora"
    assert causal_lm.adapter_format(tmp_path / "peft") == "peft"
    for folder in ("ours", "peft"):
        fresh, _ = causal_lm.load_causal_lm(tiny_folder, tokenizer=False)
        got = causal_lm.apply_adapter(fresh, tmp_path / folder)(ids).logits
        assert torch.allclose(got, want, atol=1e-5), folder
    (tmp_path / "plain").mkdir()
    with pytest.raises(ModelError, match="not an adapter folder"):
        causal_lm.adapter_format(tmp_path / "plain")
    (tmp_path / "plain" / "adapter_config.json").write_text("{")
    with pytest.raises(ModelError, match="not readable JSON"):
        causal_lm.apply_adapter(model, tmp_path / "plain")


def test_builtin_names_are_listed():
    assert causal_lm.causal_lm_names() == ["smollm2", "gemma3-270m"]
    with pytest.raises(ModelError, match="not a causal language model"):
        causal_lm.load_causal_lm("minilm")


@pytest.mark.slow
def test_the_dequantised_smollm2_folder_names_its_architecture():
    """Tools that read a Hugging Face folder (llama.cpp's convert_lora_to_gguf.py among them) find the model class in
    config.json's ``architectures``; a format-1 cache folder, which had ``null`` there, is rebuilt."""
    from asymlora.models.smollm2 import smollm2_folder

    config = json.loads((smollm2_folder() / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert config["vocab_size"] == 49152 and config["num_hidden_layers"] == 30
