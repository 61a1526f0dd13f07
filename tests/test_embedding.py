"""AdaptedEmbedding: nn.Embedding as a layer type (its whole layout lives in layers.py)."""

import pytest
import torch
import torch.nn as nn

import asymlora

peft = pytest.importorskip("peft")


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8, padding_idx=0)
        self.proj = nn.Linear(8, 8)
        self.classifier = nn.Linear(8, 3)

    def forward(self, ids):
        return self.classifier(torch.tanh(self.proj(self.embed(ids))).mean(dim=1))


def _fresh():
    torch.manual_seed(0)
    return Tokens().eval()


IDS = torch.tensor([[1, 5, 0, 19], [3, 3, 7, 2]])


def _adapted(preset="b-only", **kw):
    net = _fresh()
    asymlora.inject(net, asymlora.AdapterConfig.preset(preset, rank=3, targets=["embed", "proj"], **kw))
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for _, layer in asymlora.adapted_layers(net):
            for which in "AB":
                if layer.is_trainable(which):
                    layer.factor(which).copy_(torch.randn(layer.factor(which).shape, generator=g) * 0.3)
    return net


def test_embedding_branch_is_column_t_of_a_mapped_by_b():
    net = _adapted("lora")
    e = net.embed
    assert isinstance(e, asymlora.AdaptedEmbedding) and (e.d_in, e.d_out) == (20, 8)
    assert e.lora_A.shape == (3, 20) and e.lora_B.shape == (8, 3)
    expected = e.base_layer.weight[IDS] + e.scale * (e.lora_B @ e.lora_A[:, IDS].permute(1, 0, 2)).permute(0, 2, 1)
    assert torch.allclose(e(IDS), expected, atol=1e-6)
    w0 = e.base_layer.weight.clone()
    out = net(IDS)
    asymlora.merge(net)
    assert torch.allclose(e.base_layer.weight, w0 + e.delta_weight().T, atol=1e-6)
    assert torch.allclose(net(IDS), out, atol=1e-5)
    asymlora.unmerge(net)
    assert torch.allclose(e.base_layer.weight, w0, atol=1e-6)


def test_b_only_embedding_trains_b_with_the_right_gradient_and_no_dropout():
    net = _adapted("b-only", dropout=0.5)
    net.train()
    e = net.embed
    out = e(IDS)
    assert torch.equal(out, e(IDS))  # dropout does not act on token ids
    out.sum().backward()
    ones = torch.ones(IDS.shape + (8,))
    h = e.lora_A.T[IDS]  # (batch, seq, r)
    assert torch.allclose(e.lora_B.grad, e.scale * ones.reshape(-1, 8).T @ h.reshape(-1, 3), atol=1e-5)
    assert e.lora_A.grad is None and not e.lora_A.requires_grad


def test_embedding_adapter_round_trips_through_save_and_load(tmp_path):
    net = _adapted("b-only")
    asymlora.save_adapter(net, tmp_path)
    assert torch.equal(asymlora.load_adapter(_fresh(), tmp_path)(IDS), net(IDS))


@pytest.mark.parametrize("preset", ["b-only", "lora"])
def test_embedding_export_loads_in_peft_and_imports_back(tmp_path, preset):
    net = _adapted(preset)
    out = net(IDS)
    asymlora.export_peft(net, tmp_path / "peft")
    peft_model = peft.PeftModel.from_pretrained(_fresh(), tmp_path / "peft").eval()
    assert torch.allclose(peft_model(IDS), out, atol=1e-6)
    back = asymlora.import_peft(_fresh(), tmp_path / "peft")
    assert isinstance(back.embed, asymlora.AdaptedEmbedding)
    assert torch.allclose(back(IDS), out, atol=1e-6)


def test_a_peft_trained_embedding_lora_imports_with_peft_outputs(tmp_path):
    pm = peft.get_peft_model(_fresh(), peft.LoraConfig(r=2, lora_alpha=4, target_modules=["embed", "proj"]))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    pm.save_pretrained(tmp_path)
    expected = pm.eval()(IDS)
    model = asymlora.import_peft(_fresh(), tmp_path)
    assert torch.allclose(model(IDS), expected, atol=1e-6)


def test_embeddings_serve_many_b_only_adapters_in_one_batch(tmp_path):
    dirs = []
    for i in range(2):
        net = _adapted("b-only")
        with torch.no_grad():
            net.embed.lora_B.add_(float(i))
        dirs.append(asymlora.save_adapter(net, tmp_path / f"a{i}"))
    singles = [asymlora.load_adapter(_fresh(), d)(IDS) for d in dirs]
    multi = asymlora.load_many(_fresh(), dirs)
    mixed = multi(IDS, adapter_ids=[1, 0])
    assert torch.allclose(mixed[0], singles[1][0], atol=1e-6) and torch.allclose(mixed[1], singles[0][1], atol=1e-6)


def test_embedding_with_max_norm_is_refused():
    net = _fresh()
    net.embed = nn.Embedding(20, 8, max_norm=1.0)
    with pytest.raises(TypeError, match="max_norm"):
        asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=2, targets=["embed"]))
