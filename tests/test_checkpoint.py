"""save_adapter / load_adapter: identical outputs, only trained tensors stored, clear errors."""

import json
import os

import pytest
import torch
import torch.nn as nn
from conftest import TinyNet, randomize_factors, tiny_bert
from fuzz.edit import resign
from safetensors.torch import load_file

import asymlora
from asymlora.adapter_file import AdapterFolder
from asymlora.checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError


def _trained(preset, **kw):
    torch.manual_seed(0)
    net = TinyNet()
    asymlora.inject(net, asymlora.AdapterConfig.preset(preset, rank=3, targets=["conv", "proj", "mlp.0", "mlp.2"],
                                                       train_modules=["classifier"], **kw))
    randomize_factors(net)
    with torch.no_grad():
        net.classifier.weight.add_(1.0)
    return net


def _fresh():
    torch.manual_seed(0)
    return TinyNet()


@pytest.mark.parametrize("preset", ["b-only", "lora", "a-only", "b-only-svd", "a-only-kaiming", "lora-b-orthogonal"])
def test_round_trip_gives_identical_outputs(tmp_path, tiny_input, preset):
    net = _trained(preset)
    out = net(tiny_input)
    asymlora.save_adapter(net, tmp_path)
    loaded = asymlora.load_adapter(_fresh(), tmp_path)
    assert torch.equal(loaded(tiny_input), out)
    assert asymlora.trainable_parameters(loaded) == asymlora.trainable_parameters(net)


def test_b_only_file_holds_b_and_the_head_only(tmp_path):
    net = _trained("b-only")
    asymlora.save_adapter(net, tmp_path)
    keys = set(load_file(str(tmp_path / WEIGHTS_NAME)))
    layer_keys = {k for k in keys if k.startswith("layers.")}
    assert layer_keys == {f"layers.{n}.lora_B" for n in ("conv", "proj", "mlp.0", "mlp.2")}
    assert {k for k in keys if k.startswith("train_modules.")} == {"train_modules.classifier.weight",
                                                                   "train_modules.classifier.bias"}
    entry = AdapterFolder.open(tmp_path).layers["proj"]
    assert entry.A.stored is False and entry.A.seed > 0 and entry.B.stored and entry.B.dtype == "F32"


def test_b_only_file_is_d_out_over_d_in_plus_d_out_of_lora(tmp_path):
    sizes = {}
    for preset in ("b-only", "lora"):
        net = nn.Sequential(nn.Linear(512, 256))
        asymlora.inject(net, asymlora.AdapterConfig.preset(preset, rank=8, targets=["0"]))
        asymlora.save_adapter(net, tmp_path / preset)
        sizes[preset] = os.path.getsize(tmp_path / preset / WEIGHTS_NAME)
    tensor_ratio = 256 / (512 + 256)
    assert sizes["b-only"] / sizes["lora"] == pytest.approx(tensor_ratio, abs=0.02)


def test_store_frozen_writes_the_frozen_factor_too(tmp_path, tiny_input):
    net = _trained("b-only")
    asymlora.save_adapter(net, tmp_path, store_frozen=True)
    assert "layers.proj.lora_A" in load_file(str(tmp_path / WEIGHTS_NAME))
    assert torch.equal(asymlora.load_adapter(_fresh(), tmp_path)(tiny_input), net(tiny_input))


def test_regenerated_factor_mismatch_is_a_clear_error(tmp_path):
    net = _trained("b-only")
    asymlora.save_adapter(net, tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    group = next(g for g in meta["layer_groups"] if g["name"] == "proj")
    group["A"]["fingerprint"][0] += 1.0  # as if another platform drew another matrix
    (tmp_path / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="the config was edited after the save"):
        asymlora.load_adapter(_fresh(), tmp_path)
    resign(tmp_path)  # an edit that also fixed the checksums: the fingerprint check still holds
    with pytest.raises(CheckpointError, match=r"proj: the frozen factor A .*store_frozen=True"):
        asymlora.load_adapter(_fresh(), tmp_path)


def test_corrupt_or_mismatched_files_are_clear_errors(tmp_path):
    net = _trained("b-only")
    asymlora.save_adapter(net, tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        asymlora.load_adapter(_fresh(), tmp_path)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        asymlora.load_adapter(_fresh(), tmp_path)
    with pytest.raises(CheckpointError, match="is missing"):
        asymlora.load_adapter(_fresh(), tmp_path / "nowhere")


def test_checkpoint_for_another_base_model_is_refused(tmp_path):
    model = tiny_bert()
    asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=4, targets=["query"], train_modules=["classifier"]))
    asymlora.save_adapter(model, tmp_path)
    with pytest.raises(CheckpointError, match="does not fit this base model"):
        asymlora.load_adapter(_fresh(), tmp_path)  # no 'query' modules at all
    with pytest.raises(CheckpointError, match=r"classifier\.(weight|bias): checkpoint shape"):
        asymlora.load_adapter(tiny_bert(num_labels=5), tmp_path)
    retry = tiny_bert(num_labels=5)
    with pytest.raises(CheckpointError):
        asymlora.load_adapter(retry, tmp_path)
    assert not list(asymlora.adapted_layers(retry))  # a failed load leaves the base model as it was
    from transformers import BertConfig, BertForSequenceClassification
    wider = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=48, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=64, num_labels=3))
    with pytest.raises(CheckpointError, match="d_in=32 but this base model's layer gives 48"):
        asymlora.load_adapter(wider, tmp_path)


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, tiny_input):
    net = _trained("b-only")
    asymlora.save_adapter(net, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    import asymlora.checkpoint as ck

    def boom(*a, **k):
        raise KeyboardInterrupt("killed mid-save")
    monkeypatch.setattr(ck, "serialize", boom)
    saved_b = net.proj.lora_B.detach().clone()
    with torch.no_grad():
        net.proj.lora_B.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        asymlora.save_adapter(net, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    with torch.no_grad():
        net.proj.lora_B.copy_(saved_b)
    assert torch.equal(asymlora.load_adapter(_fresh(), tmp_path)(tiny_input), net(tiny_input))


def test_read_factors_regenerates_seed_only_factors(tmp_path):
    net = _trained("b-only")
    asymlora.save_adapter(net, tmp_path)
    factors = asymlora.read_factors(tmp_path)
    for name, layer in asymlora.adapted_layers(net):
        a, b = factors[name]
        assert torch.allclose(a, layer.lora_A) and torch.allclose(b, layer.lora_B)


def test_read_factors_needs_the_base_for_svd(tmp_path):
    net = _trained("b-only-svd")
    asymlora.save_adapter(net, tmp_path)
    with pytest.raises(CheckpointError, match="pass the base model"):
        asymlora.read_factors(tmp_path)
    factors = asymlora.read_factors(tmp_path, base_model=_fresh())
    assert torch.allclose(factors["proj"][0], net.proj.lora_A, atol=1e-6)


def test_config_json_groups_alike_layers_and_format_1_files_still_load(tmp_path, tiny_input):
    net = _trained("b-only")
    out = net(tiny_input)
    asymlora.save_adapter(net, tmp_path)
    text = (tmp_path / CONFIG_NAME).read_text()
    meta = json.loads(text)
    assert "\n" not in text.strip() and ", " not in text  # one line, no padding
    assert meta["format_version"] == 3 and "layers" not in meta
    group = next(g for g in meta["layer_groups"] if g["name"] == "proj")
    assert set(group["A"]) == {"stored", "fingerprint"}  # init / trainable / seed follow from the config
    assert set(group["B"]) == {"stored", "dtype"}  # stored: covered by the file's sha256, no fingerprint
    assert meta["train_params"] == {"classifier.weight": {"dtype": "F32", "shape": [3, 24]},
                                    "classifier.bias": {"dtype": "F32", "shape": [3]}}
    folder = AdapterFolder.open(tmp_path)
    assert set(folder.layers) == {"conv", "proj", "mlp.0", "mlp.2"}
    entry = folder.layers["proj"]
    assert entry.A.init == "orthogonal" and entry.A.trainable is False and entry.A.regenerable
    assert entry.A.seed == net.proj.seeds["A"] and entry.B.seed == net.proj.seeds["B"]
    # format 1 (one entry per layer, every field spelt out, a fingerprint per regenerated factor) loads the same
    v1 = {k: v for k, v in meta.items() if k not in ("layer_groups", "train_params")}
    v1["format_version"] = 1
    v1["layers"] = {}
    for name, layer in asymlora.adapted_layers(net):
        entry = folder.layers[name]
        e = {"d_in": entry.d_in, "d_out": entry.d_out, "rank": entry.rank, "scale": entry.scale}
        for which in "AB":
            f = entry.factor(which)
            e[which] = {"init": f.init, "trainable": f.trainable, "seed": f.seed, "stored": f.stored,
                        "regenerable": f.regenerable}
        e["A"]["fingerprint"] = asymlora.init.fingerprint(layer.lora_A)
        e["B"]["fingerprint"] = [0.0] * 5  # a stored factor is checked by the file's sha256, not by this
        e["kind"], e["alpha"] = layer.kind, 6.0
        v1["layers"][name] = e
    (tmp_path / CONFIG_NAME).write_text(json.dumps(v1, indent=2))
    assert torch.equal(asymlora.load_adapter(_fresh(), tmp_path)(tiny_input), out)
    v1["layers"]["proj"]["A"]["fingerprint"][1] -= 1.0
    (tmp_path / CONFIG_NAME).write_text(json.dumps(v1))
    with pytest.raises(CheckpointError, match=r"^proj: the frozen factor A"):
        asymlora.load_adapter(_fresh(), tmp_path)
    del v1["layers"]["proj"]["B"]
    (tmp_path / CONFIG_NAME).write_text(json.dumps(v1))
    with pytest.raises(CheckpointError, match="no entry for factor B"):
        asymlora.load_adapter(_fresh(), tmp_path)
    meta["layer_groups"][0]["index"] = 17
    (tmp_path / CONFIG_NAME).write_text(json.dumps(meta))
    resign(tmp_path)
    with pytest.raises(CheckpointError, match="layer group index"):
        asymlora.load_adapter(_fresh(), tmp_path)


def test_many_alike_layers_cost_one_group_entry(tmp_path):
    """A 30-block stack writes one group per module name, so the config does not grow with depth."""
    sizes = {}
    for depth in (3, 30):
        net = _stack(depth)
        asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=2, targets="all-linear"))
        with torch.no_grad():
            for _, layer in asymlora.adapted_layers(net):
                layer.lora_B.normal_()
        asymlora.save_adapter(net, tmp_path / str(depth))
        meta = json.loads((tmp_path / str(depth) / CONFIG_NAME).read_text())
        assert [g["name"] for g in meta["layer_groups"]] == ["{}.0", "{}.2", "{}.3"]
        assert meta["layer_groups"][0]["index"] == f"0-{depth - 1}"
        sizes[depth] = (tmp_path / str(depth) / CONFIG_NAME).stat().st_size
        x = torch.randn(3, 16)
        assert torch.equal(asymlora.load_adapter(_stack(depth), tmp_path / str(depth))(x), net(x))
    assert sizes[30] - sizes[3] < 40  # only the range's digits and the summed fingerprints' width change


def _stack(depth):
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8), nn.Linear(8, 16))
                           for _ in range(depth)])


def test_saving_the_same_adapter_twice_gives_the_same_bytes(tmp_path):
    """safetensors writes its header metadata in a random order; the adapter's files must not vary."""
    net = _trained("b-only")
    files = []
    for i in range(4):
        asymlora.save_adapter(net, tmp_path / str(i))
        files.append({p.name: p.read_bytes() for p in (tmp_path / str(i)).iterdir()})
    assert all(f == files[0] for f in files)
