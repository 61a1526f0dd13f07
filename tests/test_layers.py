"""Adapted layers: forward math, merge/unmerge, the lean B-only path, dtype handling."""

import pytest
import torch
import torch.nn as nn
from conftest import randomize_factors, tiny_gpt2

import asymlora
from asymlora import layers as layers_mod


def _layers_by_kind(model):
    return {layer.kind: layer for _, layer in asymlora.adapted_layers(model)}


@pytest.mark.parametrize("preset", ["lora", "b-only", "a-only", "b-only-svd", "a-only-svd", "lora-b-kaiming"])
def test_delta_is_zero_at_init_and_outputs_equal_the_base(tiny_net, tiny_input, preset):
    before = tiny_net(tiny_input)
    asymlora.inject(tiny_net, asymlora.AdapterConfig.preset(preset, rank=3, targets=["conv", "proj", "mlp.0"]))
    for _, layer in asymlora.adapted_layers(tiny_net):
        assert torch.count_nonzero(layer.delta_weight()) == 0
    assert torch.equal(tiny_net(tiny_input), before)


def test_forward_equals_w0_plus_s_b_a(tiny_net, tiny_input):
    asymlora.inject(tiny_net, asymlora.AdapterConfig.preset("lora", rank=3, alpha=5.0, targets=["conv", "proj", "mlp.0"]))
    randomize_factors(tiny_net)
    x = torch.randn(7, 96)
    proj = tiny_net.proj
    assert proj.scale == pytest.approx(5 / 3)
    expected = x @ (proj.base_layer.weight + proj.scale * proj.lora_B @ proj.lora_A).T + proj.base_layer.bias
    assert torch.allclose(proj(x), expected, atol=1e-5)
    conv = tiny_net.conv
    img = torch.randn(2, 3, 4, 4)
    w = conv.base_layer.weight + (conv.scale * conv.lora_B @ conv.lora_A).reshape(conv.base_layer.weight.shape)
    assert torch.allclose(conv(img), nn.functional.conv2d(img, w, conv.base_layer.bias, padding=1), atol=1e-5)


def test_rslora_scaling():
    lin = nn.Sequential(nn.Linear(8, 8))
    asymlora.inject(lin, asymlora.AdapterConfig.preset("b-only", rank=4, alpha=6.0, targets=["0"], scaling="rslora"))
    assert lin[0].scale == pytest.approx(6 / 2)


def test_merge_unmerge_round_trip_and_merged_forward(tiny_net, tiny_input):
    w_before = {n: p.clone() for n, p in tiny_net.named_parameters()}
    asymlora.inject(tiny_net, asymlora.AdapterConfig.preset("lora", rank=3, targets=["conv", "proj", "mlp.0", "mlp.2"]))
    randomize_factors(tiny_net)
    unmerged_out = tiny_net(tiny_input)
    asymlora.merge(tiny_net)
    assert all(layer.merged for _, layer in asymlora.adapted_layers(tiny_net))
    assert torch.allclose(tiny_net(tiny_input), unmerged_out, atol=1e-5)
    assert not torch.allclose(tiny_net.proj.base_layer.weight, w_before["proj.weight"])
    asymlora.unmerge(tiny_net)
    for name, layer in asymlora.adapted_layers(tiny_net):
        assert torch.allclose(layer.base_layer.weight, w_before[f"{name}.weight"], atol=1e-6)
    assert torch.allclose(tiny_net(tiny_input), unmerged_out, atol=1e-6)


def test_conv1d_gpt2_layout_merges_transposed():
    model = tiny_gpt2()
    ids = torch.randint(0, 100, (2, 10), generator=torch.Generator().manual_seed(0))
    asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=4, targets=["c_attn", "c_fc"]))
    randomize_factors(model)
    layer = model.transformer.h[0].attn.c_attn
    assert layer.kind == "conv1d" and layer.lora_A.shape == (4, 32) and layer.lora_B.shape == (96, 4)
    out = model(ids).logits
    asymlora.merge(model)
    assert torch.allclose(model(ids).logits, out, atol=1e-4)


def test_frozen_factor_gets_no_gradient_and_is_not_a_parameter(tiny_net, tiny_input):
    asymlora.inject(tiny_net, asymlora.AdapterConfig.preset("b-only", rank=3, targets=["conv", "proj", "mlp.0"],
                                                            train_modules=["classifier"]))
    randomize_factors(tiny_net)
    tiny_net(tiny_input).square().sum().backward()
    params = {id(p) for p in tiny_net.parameters()}
    for _, layer in asymlora.adapted_layers(tiny_net):
        assert layer.lora_A.grad is None and not layer.lora_A.requires_grad
        assert id(layer.lora_A) not in params
        assert layer.lora_B.grad is not None and torch.count_nonzero(layer.lora_B.grad) > 0
        assert layer.base_layer.weight.grad is None
    assert tiny_net.classifier.weight.grad is not None
    # which factor trains is named by role: B (output projection) trains in "b-only"
    assert all(layer.is_trainable("B") and not layer.is_trainable("A") for _, layer in asymlora.adapted_layers(tiny_net))


def test_a_only_trains_the_input_projection(tiny_net, tiny_input):
    asymlora.inject(tiny_net, asymlora.AdapterConfig.preset("a-only", rank=3, targets=["proj"]))
    tiny_net(tiny_input).sum().backward()
    layer = tiny_net.proj
    assert layer.lora_B.grad is None and not layer.lora_B.requires_grad
    assert layer.lora_A.grad is not None and torch.count_nonzero(layer.lora_A.grad) > 0


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_lean_path_gradients_equal_plain_autograd(tiny_net, tiny_input, kind):
    asymlora.inject(tiny_net, asymlora.AdapterConfig.preset("b-only", rank=3, targets=["conv", "proj"]))
    randomize_factors(tiny_net)
    layer = _layers_by_kind(tiny_net)[kind]
    x = (torch.randn(4, 96) if kind == "linear" else torch.randn(2, 3, 4, 4)).requires_grad_(True)
    g = torch.randn_like(layer(x))

    (layer(x) * g).sum().backward()
    lean_x, lean_b = x.grad.clone(), layer.lora_B.grad.clone()
    x.grad = None
    layer.lora_B.grad = None
    ref = layer.base_layer(x) + layer.scale * layer.expand(layer.project(x, layer.lora_A), layer.lora_B)
    (ref * g).sum().backward()
    assert torch.allclose(lean_x, x.grad, atol=1e-5)
    assert torch.allclose(lean_b, layer.lora_B.grad, atol=1e-5)


def test_lean_dropout_regenerates_exactly_the_forward_mask(monkeypatch):
    net = nn.Sequential(nn.Linear(20, 10))
    asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=4, targets=["0"], dropout=0.5))
    randomize_factors(net)
    net.train()
    drops = []
    real = layers_mod._dropped
    monkeypatch.setattr(layers_mod, "_dropped", lambda *args: drops.append(real(*args)) or drops[-1])
    x = torch.randn(6, 20, requires_grad=True)
    g = torch.randn(6, 10)
    (net(x) * g).sum().backward()
    assert len(drops) == 2 and torch.equal(drops[0], drops[1]) and drops[0].shape == x.shape
    assert 0 < int(drops[0].sum()) < drops[0].numel()
    mask = (~drops[0]).float() * layers_mod._keep_scale(0.5)
    layer = net[0]
    x_ref = x.detach().clone().requires_grad_(True)
    h = (x_ref * mask) @ layer.lora_A.T
    out = layer.base_layer(x_ref) + layer.scale * h @ layer.lora_B.detach().T
    (out * g).sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-6)
    assert torch.allclose(layer.lora_B.grad, layer.scale * g.T @ h, atol=1e-5)


@pytest.mark.parametrize("preset", ["b-only", "lora"])
def test_dropout_on_the_projection_drops_features_of_a_x_with_exact_gradients(monkeypatch, preset):
    """dropout_on="projection": y = W0·x + s·B·drop(A·x); the lean B-only path regenerates the r-sized
    mask in backward and its gradients equal plain autograd through the same mask."""
    d_in, d_out, r, tokens = 20, 10, 4, 6
    net = nn.Sequential(nn.Linear(d_in, d_out))
    asymlora.inject(net, asymlora.AdapterConfig.preset(preset, rank=r, targets=["0"], dropout=0.5,
                                                        dropout_on="projection"))
    randomize_factors(net)
    net.train()
    layer = net[0]
    assert layer.dropout_on == "projection" and "on projection" in repr(layer)
    torch.manual_seed(3)
    x = torch.randn(tokens, d_in, requires_grad=True)
    g = torch.randn(tokens, d_out)
    if preset == "b-only":
        drops = []
        real = layers_mod._dropped
        monkeypatch.setattr(layers_mod, "_dropped", lambda *args: drops.append(real(*args)) or drops[-1])
        kept = []
        weights = {layer.lora_A.data_ptr(), layer.lora_B.data_ptr(), layer.base_layer.weight.data_ptr()}
        with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
            out = net(x)
        assert [tuple(t.shape) for t in kept if t.data_ptr() not in weights] == [(tokens, r)]
        (out * g).sum().backward()
        assert len(drops) == 2 and torch.equal(drops[0], drops[1]) and drops[0].shape == (tokens, r)
        mask = (~drops[0]).float() * layers_mod._keep_scale(0.5)
    else:  # plain autograd: F.dropout on h, the same draws as F.dropout on ones of h's shape
        torch.manual_seed(5)
        out = net(x)
        (out * g).sum().backward()
        torch.manual_seed(5)
        mask = torch.nn.functional.dropout(torch.ones(tokens, r), 0.5, training=True)
    assert 0 < int((mask == 0).sum()) < mask.numel()
    x_ref = x.detach().clone().requires_grad_(True)
    a_ref = layer.lora_A.detach().clone().requires_grad_(preset == "lora")
    b_ref = layer.lora_B.detach().clone().requires_grad_(True)
    h = (x_ref @ a_ref.T) * mask
    ref = layer.base_layer(x_ref) + layer.scale * h @ b_ref.T
    (ref * g).sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)
    assert torch.allclose(layer.lora_B.grad, b_ref.grad, atol=1e-5)
    if preset == "lora":
        assert torch.allclose(layer.lora_A.grad, a_ref.grad, atol=1e-5)


def test_dropout_on_is_checked_saved_and_defaults_to_the_input_for_older_configs(tmp_path):
    with pytest.raises(asymlora.config.ConfigError, match="dropout_on must be one of"):
        asymlora.AdapterConfig(dropout_on="hidden")
    cfg = asymlora.AdapterConfig.preset("b-only", rank=2, targets=["0"], dropout=0.1, dropout_on="projection")
    assert asymlora.AdapterConfig.from_dict(cfg.to_dict()) == cfg
    old = cfg.to_dict()
    del old["dropout_on"]  # as written before the field existed
    assert asymlora.AdapterConfig.from_dict(old).dropout_on == "input"
    net = nn.Sequential(nn.Linear(8, 4))
    asymlora.inject(net, cfg)
    asymlora.save_adapter(net, tmp_path / "a")
    fresh = nn.Sequential(nn.Linear(8, 4))
    fresh.load_state_dict({k.replace("base_layer.", ""): v for k, v in net.state_dict().items() if "lora" not in k})
    asymlora.load_adapter(fresh, tmp_path / "a")
    assert fresh[0].dropout_on == "projection"
    with pytest.warns(UserWarning, match="PEFT's lora_dropout acts on the layer input"):
        asymlora.export_peft(net, tmp_path / "peft")  # PEFT cannot say where dropout acts: said, not silent


def test_b_only_keeps_only_r_sized_activations_for_backward():
    d_in, d_out, r, tokens = 64, 48, 4, 30
    net = nn.Sequential(nn.Linear(d_in, d_out))
    asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=r, targets=["0"], dropout=0.1))
    net.train()
    layer = net[0]
    weights = {layer.lora_A.data_ptr(), layer.lora_B.data_ptr(), layer.base_layer.weight.data_ptr()}
    x = torch.randn(tokens, d_in, requires_grad=True)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        layer.adapter_output(x)
    activations = [t for t in kept if t.data_ptr() not in weights]
    assert [tuple(t.shape) for t in activations] == [(tokens, r)]
    # the ordinary LoRA path keeps the d_in-wide input (and a d_in-wide dropout mask)
    lora = nn.Sequential(nn.Linear(d_in, d_out))
    asymlora.inject(lora, asymlora.AdapterConfig.preset("lora", rank=r, targets=["0"], dropout=0.1))
    lora.train()
    kept.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        lora[0].adapter_output(x)
    assert any(t.numel() == tokens * d_in for t in kept)


def test_half_precision_base_keeps_fp32_adapter_math():
    net = nn.Sequential(nn.Linear(16, 8)).to(torch.bfloat16)
    asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=2, targets=["0"]))
    layer = net[0]
    assert layer.lora_A.dtype == torch.float32 and layer.lora_B.dtype == torch.float32
    assert layer.lora_A.device == layer.base_layer.weight.device
    x = torch.randn(3, 16, dtype=torch.bfloat16)
    out = net(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert layer.lora_B.grad.dtype == torch.float32


def test_unsupported_conv_variants_are_clear_errors():
    net = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(TypeError, match="grouped"):
        asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=2, targets=["0"]))


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_lean_path_under_autocast_returns_gradients_in_each_inputs_dtype(kind):
    net = nn.Sequential(nn.Linear(16, 8) if kind == "linear" else nn.Conv2d(3, 4, 3))
    asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=2, targets=["0"], dropout=0.1))
    net.train()
    x = (torch.randn(3, 16) if kind == "linear" else torch.randn(2, 3, 5, 5)).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert net[0].lora_B.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    assert torch.count_nonzero(net[0].lora_B.grad) > 0


def test_dropout_mask_is_reproducible_unbiased_and_drops_p():
    like = torch.empty(300, 257)  # an odd size: the last 64-bit draw is only partly used
    p = 0.1
    m = layers_mod._dropout_mask(like, p, seed=1234)
    assert m.shape == like.shape and m.dtype == like.dtype
    assert torch.equal(m, layers_mod._dropout_mask(like, p, seed=1234))
    assert not torch.equal(m, layers_mod._dropout_mask(like, p, seed=1235))
    dropped = (m == 0).float().mean().item()
    n = like.numel()
    assert abs(dropped - p) < 5 * (p * (1 - p) / n) ** 0.5  # five standard errors
    kept_values = torch.unique(m[m != 0])
    assert kept_values.numel() == 1 and kept_values.item() == pytest.approx(1 / (1 - round(p * 65536) / 65536))
    assert abs(m.mean().item() - 1.0) < 0.01
    # the words used are independent: neighbouring elements' keep decisions are uncorrelated
    k = (m != 0).float().reshape(-1)
    corr = torch.corrcoef(torch.stack([k[:-1], k[1:]]))[0, 1].item()
    assert abs(corr) < 0.02
