"""export_peft / import_peft against the real peft package."""

import pytest
import torch
from conftest import TinyNet, randomize_factors, tiny_bert, tiny_gpt2

import asymlora

peft = pytest.importorskip("peft")


def _tiny_net():
    torch.manual_seed(0)
    return TinyNet()


@pytest.mark.parametrize("preset, kw", [("b-only", {}), ("lora", {"rank_pattern": {"mlp.0": 2}, "alpha_pattern": {"proj": 1.5}}),
                                        ("a-only", {"scaling": "rslora"})])
def test_export_loads_in_peft_with_the_same_outputs(tmp_path, tiny_input, preset, kw):
    net = _tiny_net()
    asymlora.inject(net, asymlora.AdapterConfig.preset(preset, rank=3, targets=["conv", "proj", "mlp.0", "mlp.2"],
                                                       train_modules=["classifier"], **kw))
    randomize_factors(net)
    with torch.no_grad():
        net.classifier.bias.add_(0.5)
    out = net(tiny_input)
    asymlora.export_peft(net, tmp_path)
    peft_model = peft.PeftModel.from_pretrained(_tiny_net(), tmp_path).eval()
    assert torch.allclose(peft_model(tiny_input), out, atol=1e-5)


def test_export_gpt2_conv1d_loads_in_peft(tmp_path):
    model = tiny_gpt2()
    asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=4, targets=["c_attn", "c_fc"]))
    randomize_factors(model)
    ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    out = model(ids).logits
    asymlora.export_peft(model, tmp_path)
    peft_model = peft.PeftModel.from_pretrained(tiny_gpt2(), tmp_path).eval()
    assert torch.allclose(peft_model(ids).logits, out, atol=1e-4)


def _peft_trained(tmp_path):
    model = tiny_bert()
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"],
                          rank_pattern={"value": 2})
    pm = peft.get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n or "modules_to_save" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    pm.save_pretrained(tmp_path)
    return pm.eval()


def test_import_peft_matches_peft_outputs(tmp_path):
    pm = _peft_trained(tmp_path)
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    expected = pm(input_ids=ids).logits
    model = asymlora.import_peft(tiny_bert(), tmp_path)
    assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-5)
    layers = dict(asymlora.adapted_layers(model))
    assert layers["bert.encoder.layer.0.attention.self.value"].rank == 2
    assert all(layer.is_trainable("A") and layer.is_trainable("B") for layer in layers.values())


def test_import_peft_to_continue_as_b_only_and_resave(tmp_path):
    _peft_trained(tmp_path / "peft")
    model = asymlora.import_peft(tiny_bert(), tmp_path / "peft", train="B")
    layers = dict(asymlora.adapted_layers(model))
    assert all(not l.is_trainable("A") and l.is_trainable("B") for l in layers.values())
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    out = model(input_ids=ids).logits
    asymlora.save_adapter(model, tmp_path / "ours")  # the loaded A cannot be regenerated: it is stored
    again = asymlora.load_adapter(tiny_bert(), tmp_path / "ours")
    assert torch.allclose(again(input_ids=ids).logits, out, atol=1e-6)


def test_read_factors_reads_peft_folders(tmp_path):
    pm = _peft_trained(tmp_path)
    factors = asymlora.read_factors(tmp_path)
    name = "bert.encoder.layer.1.attention.self.query"
    layer = pm.base_model.model.bert.encoder.layer[1].attention.self.query
    assert torch.allclose(factors[name][0], layer.lora_A["default"].weight)
    assert torch.allclose(factors[name][1], layer.lora_B["default"].weight)


def test_import_refuses_non_lora_and_pickles(tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "IA3"}')
    with pytest.raises(asymlora.CheckpointError, match="only LoRA"):
        asymlora.import_peft(tiny_bert(), tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (tmp_path / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(asymlora.CheckpointError, match="never unpickles"):
        asymlora.import_peft(tiny_bert(), tmp_path)
