"""``export_peft`` output under transformers' own PEFT integration (real transformers + peft, tiny models built
here): ``model.load_adapter(dir)`` on the plain base model, and ``AutoModelFor*.from_pretrained(dir)`` of the
adapter folder, give exactly the asymlora model's outputs (``torch.equal``) for every layer kind that
``export_peft`` writes — Linear (B-only, LoRA with rsLoRA and a rank pattern), Embedding, GPT-2 Conv1D,
and a classifier head trained in full (``modules_to_save``)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")  # transformers' load_adapter runs on peft

from toy import tiny_llama, toy_model  # noqa: E402
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel  # noqa: E402

import asymlora  # noqa: E402

IDS = torch.tensor([[2, 5, 6, 8, 4, 3], [3, 9, 10, 11, 12, 2]])


def tiny_gpt2() -> GPT2LMHeadModel:
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=50, n_positions=32, bos_token_id=0, eos_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return GPT2LMHeadModel(cfg).eval()


CASES = {
    "llama-b-only-all-linear": (tiny_llama, asymlora.AdapterConfig.preset("b-only", rank=4, targets="all-linear")),
    "llama-lora-rslora-rank-pattern": (tiny_llama, asymlora.AdapterConfig.preset(
        "lora", rank=4, targets="all-linear", scaling="rslora", rank_pattern={"down_proj": 2})),
    "llama-embedding": (tiny_llama, asymlora.AdapterConfig.preset("b-only", rank=4, targets=("embed_tokens", "q_proj"))),
    "gpt2-conv1d": (tiny_gpt2, asymlora.AdapterConfig.preset("b-only", rank=4, targets=("c_attn", "c_fc"))),
    "bert-classifier-head": (toy_model, asymlora.AdapterConfig.preset(
        "b-only", rank=4, targets=("query", "value"), train_modules=("classifier",))),
}


def trained(base, cfg) -> torch.nn.Module:
    """The adapted model with every trained tensor moved off its init (B = 0 would make any loader look right)."""
    model = asymlora.inject(base().eval(), cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("case", sorted(CASES))
def test_transformers_load_adapter_gives_identical_outputs(case, tmp_path):
    base, cfg = CASES[case]
    model = trained(base, cfg)
    asymlora.export_peft(model, tmp_path / "peft")
    plain = base().eval()
    plain.load_adapter(str(tmp_path / "peft"))  # transformers.integrations.peft.PeftAdapterMixin
    assert plain._hf_peft_config_loaded
    plain.eval()
    ref = logits(model)
    assert torch.equal(logits(plain), ref)
    assert (logits(base()) - ref).abs().max() > 0.05  # the adapter does change the outputs


def test_transformers_load_adapter_takes_an_adapter_name(tmp_path):
    model = trained(*CASES["llama-b-only-all-linear"])
    asymlora.export_peft(model, tmp_path / "peft")
    plain = tiny_llama()
    plain.load_adapter(str(tmp_path / "peft"), adapter_name="b_only")
    assert list(plain.peft_config) == ["b_only"]
    assert torch.equal(logits(plain.eval()), logits(model))


def test_auto_model_from_pretrained_of_the_adapter_folder(tmp_path):
    """With ``base_model_name_or_path`` set, ``AutoModelForCausalLM.from_pretrained(adapter_dir)`` loads the base
    from there and applies the adapter: the one-line load of a hub adapter."""
    tiny_llama().save_pretrained(tmp_path / "base")
    model = trained(*CASES["llama-b-only-all-linear"])
    asymlora.export_peft(model, tmp_path / "peft", base_model_name_or_path=str(tmp_path / "base"),
                         task_type="CAUSAL_LM")
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "peft")).eval()
    assert loaded._hf_peft_config_loaded
    assert torch.equal(logits(loaded), logits(model))
