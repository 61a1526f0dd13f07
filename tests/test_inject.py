"""Finding targets, freezing, parameter counts, summary, unload/disable, determinism of frozen factors."""

import warnings

import pytest
import torch
import torch.nn as nn
from conftest import TinyNet, randomize_factors, tiny_bert, tiny_gpt2

import asymlora


def test_the_readme_quickstart_on_a_bert_classifier():
    model = tiny_bert(num_labels=3)
    cfg = asymlora.AdapterConfig.preset("b-only", rank=8, alpha=16, targets=["query", "value"], seed=0,
                                        train_modules=["classifier"])
    model = asymlora.inject(model, cfg)
    names = [n for n, _ in asymlora.adapted_layers(model)]
    assert names == [f"bert.encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("query", "value")]
    # 4 layers × B (32 × 8) + classifier (32·3 + 3)
    assert asymlora.trainable_parameters(model) == 4 * 32 * 8 + 32 * 3 + 3
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.lora_B" for n in names} | {"classifier.weight", "classifier.bias"}
    text = str(asymlora.summary(model))
    assert "bert.encoder.layer.0.attention.self.query" in text and "orthogonal (frozen)" in text
    assert "classifier" in text and f"{asymlora.trainable_parameters(model):,}" in text


def test_lora_counts_both_factors():
    model = tiny_bert()
    asymlora.inject(model, asymlora.AdapterConfig.preset("lora", rank=4, targets=["query", "value"]))
    assert asymlora.trainable_parameters(model) == 4 * (32 * 4 + 4 * 32)
    s = asymlora.summary(model)
    assert s.adapter_trainable == 4 * 256 and len(s.rows) == 4


def test_regex_and_all_linear_targets():
    model = tiny_bert()
    asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=2, targets=r".*layer\.1\.attention\.self\.(key|query)"))
    assert [n.split(".")[-1] for n, _ in asymlora.adapted_layers(model)] == ["query", "key"]

    model = tiny_bert()
    asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=2, targets="all-linear"))
    names = [n for n, _ in asymlora.adapted_layers(model)]
    assert "classifier" not in names and len(names) == 2 * 6 + 1  # q,k,v,o,inter,out per layer + pooler
    gpt = tiny_gpt2()
    asymlora.inject(gpt, asymlora.AdapterConfig.preset("b-only", rank=2, targets="all-linear"))
    names = [n for n, _ in asymlora.adapted_layers(gpt)]
    assert "lm_head" not in names and len(names) == 2 * 4  # Conv1D c_attn, c_proj, c_fc, mlp.c_proj


def test_unknown_target_lists_closest_names():
    with pytest.raises(ValueError, match=r"'querry' matches no module.*'query'"):
        asymlora.inject(tiny_bert(), asymlora.AdapterConfig.preset("b-only", targets=["querry"]))
    with pytest.raises(ValueError, match="matches no module"):
        asymlora.inject(tiny_bert(), asymlora.AdapterConfig.preset("b-only", targets=["value"], train_modules=["clasifier"]))


def test_unsupported_type_names_the_type_and_model_is_untouched():
    model = tiny_bert()
    before = [p.requires_grad for p in model.parameters()]
    with pytest.raises(TypeError, match="LayerNorm.*not supported"):
        asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", targets=["query", "attention.output.LayerNorm"]))
    assert [p.requires_grad for p in model.parameters()] == before
    assert not list(asymlora.adapted_layers(model))


def test_rank_above_dimension_and_double_injection_are_errors():
    net = nn.Sequential(nn.Linear(6, 40))
    with pytest.raises(ValueError, match=r"0: orthogonal input projection A .* rank ≤ 6"):
        asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=8, targets=["0"]))
    asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=4, targets=["0"]))
    with pytest.raises(ValueError, match="already has asymlora adapters"):
        asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=4, targets=["0"]))


def test_rank_and_alpha_patterns():
    model = tiny_bert()
    asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=8, targets=["query", "value"],
                                                         rank_pattern={"value": 2}, alpha_pattern={r".*layer\.1\..*": 1.0}))
    layers = dict(asymlora.adapted_layers(model))
    assert layers["bert.encoder.layer.0.attention.self.value"].rank == 2
    assert layers["bert.encoder.layer.0.attention.self.query"].rank == 8
    assert layers["bert.encoder.layer.0.attention.self.query"].scale == 2.0  # alpha = 2r by default
    assert layers["bert.encoder.layer.1.attention.self.query"].scale == 1.0 / 8


def test_same_seed_gives_the_same_frozen_a_and_another_seed_another():
    def a_of(seed):
        m = tiny_bert()
        asymlora.inject(m, asymlora.AdapterConfig.preset("b-only", rank=4, targets=["query"], seed=seed))
        return [layer.lora_A.clone() for _, layer in asymlora.adapted_layers(m)]
    first, again, other = a_of(0), a_of(0), a_of(1)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not any(torch.allclose(x, y) for x, y in zip(first, other))
    assert not torch.allclose(first[0], first[1])  # layers get different matrices


def test_svd_init_uses_the_pretrained_weight():
    model = tiny_bert()
    w0 = model.bert.encoder.layer[0].attention.self.query.weight.detach().double()
    asymlora.inject(model, asymlora.AdapterConfig.preset("b-only-svd", rank=3, targets=["query"]))
    a = model.bert.encoder.layer[0].attention.self.query.lora_A.double()
    _, s, vh = torch.linalg.svd(w0)
    assert torch.allclose((a @ vh[:3].T).abs(), torch.eye(3, dtype=torch.float64), atol=1e-5)


def test_disabled_gives_the_base_model_and_keeps_trainability(tiny_input):
    torch.manual_seed(0)
    net = TinyNet()
    base_out = net(tiny_input)
    asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=3, targets=["proj", "mlp.0"]))
    randomize_factors(net)
    adapted_out = net(tiny_input)
    assert not torch.allclose(adapted_out, base_out)
    with asymlora.disabled(net):
        assert torch.allclose(net(tiny_input), base_out)
        assert all(not layer.lora_A.requires_grad and layer.lora_B.requires_grad for _, layer in asymlora.adapted_layers(net))
    assert torch.allclose(net(tiny_input), adapted_out)


def test_unload_returns_the_plain_model_with_merged_weights(tiny_input):
    torch.manual_seed(0)
    net = TinyNet()
    asymlora.inject(net, asymlora.AdapterConfig.preset("lora", rank=3, targets=["conv", "proj", "mlp.0"]))
    randomize_factors(net)
    out = net(tiny_input)
    plain = asymlora.unload(net)
    assert isinstance(plain.proj, nn.Linear) and isinstance(plain.conv, nn.Conv2d)
    assert not any(isinstance(m, asymlora.AdaptedLayer) for m in plain.modules())
    assert torch.allclose(plain(tiny_input), out, atol=1e-5)
    with pytest.raises(ValueError, match="no asymlora adapters"):
        asymlora.merge(plain)


def test_a_rank_above_min_d_in_d_out_is_warned_once_naming_the_layers():
    model = nn.Sequential(nn.Linear(16, 4), nn.Linear(4, 16), nn.Linear(16, 16))
    with pytest.warns(UserWarning, match=r"in 2 layer\(s\): 0 \(r=8 > 4\), 1 \(r=8 > 4\)\. The update") as caught:
        asymlora.inject(model, asymlora.AdapterConfig.preset("lora", rank=8, targets=["0", "1", "2"]))
    assert len([w for w in caught if "rank above" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rank ≤ min(d_in, d_out) everywhere: no warning
        asymlora.inject(nn.Sequential(nn.Linear(16, 4)), asymlora.AdapterConfig.preset("lora", rank=4, targets=["0"]))
