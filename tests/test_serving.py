"""Batched multi-adapter serving: rows pick B-only adapters; outputs equal one adapter at a time."""

import copy

import pytest
import torch
import torch.nn as nn
from conftest import TinyNet, randomize_factors, tiny_gpt2

import asymlora
from asymlora.serving import MultiAdapterLayer, ServingError, load_many


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def llama_adapters(tmp_path_factory):
    base = _tiny_llama()
    tmp = tmp_path_factory.mktemp("adapters")
    dirs = []
    for i, alpha in enumerate([8.0, 8.0, 3.0]):  # the third has another scale
        model = copy.deepcopy(base)
        asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=4, alpha=alpha, seed=5))
        randomize_factors(model, seed=30 + i, scale=0.3)
        dirs.append(asymlora.save_adapter(model, tmp / f"task{i}"))
    return base, dirs


def _one_at_a_time(base, dirs, ids, rows):
    """The same batch through a model with one adapter loaded, once per adapter; row r from adapter rows[r]."""
    outs = {}
    for k in set(rows):
        model = copy.deepcopy(base)
        if k is not None:
            asymlora.load_adapter(model, dirs[k])
        with torch.no_grad():
            outs[k] = model(ids).logits
    return torch.stack([outs[k][r] for r, k in enumerate(rows)])


def test_batched_rows_equal_one_adapter_at_a_time(llama_adapters):
    base, dirs = llama_adapters
    ids = torch.randint(0, 64, (6, 11), generator=torch.Generator().manual_seed(0))
    rows = [0, 2, None, 1, 2, 0]
    multi = load_many(copy.deepcopy(base), dirs)
    with torch.no_grad():
        out = multi(input_ids=ids, adapter_ids=rows).logits
    ref = _one_at_a_time(base, dirs, ids, rows)
    # the same computation row by row; BLAS may round a 1-row matmul differently from a 6-row one,
    # so "identical" is up to float32 round-off (and exact where a row's values do not depend on it)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(out.argmax(-1), ref.argmax(-1))
    assert torch.equal(out[2], ref[2])  # the base row: exactly the base model
    # adapters really differ, so the test can fail
    assert not torch.allclose(out[0], _one_at_a_time(base, dirs, ids, [1] * 6)[0])
    # names, indices and a tensor of ids select the same adapters
    with torch.no_grad():
        by_name = multi(input_ids=ids, adapter_ids=["task0", "task2", "base", "task1", "task2", "task0"]).logits
        by_tensor = multi(input_ids=ids, adapter_ids=torch.tensor([0, 2, -1, 1, 2, 0])).logits
    assert torch.equal(by_name, out) and torch.equal(by_tensor, out)


def test_one_adapter_for_the_whole_batch_is_bitwise_the_single_adapter_model(llama_adapters):
    base, dirs = llama_adapters
    ids = torch.randint(0, 64, (3, 8), generator=torch.Generator().manual_seed(4))
    multi = load_many(copy.deepcopy(base), dirs)
    with torch.no_grad():
        out = multi(input_ids=ids, adapter_ids=[2, 2, 2]).logits
    assert torch.equal(out, _one_at_a_time(base, dirs, ids, [2, 2, 2]))


def test_gathered_mode_matches_up_to_round_off(llama_adapters):
    base, dirs = llama_adapters
    ids = torch.randint(0, 64, (5, 9), generator=torch.Generator().manual_seed(1))
    rows = [2, 0, 1, None, 0]
    grouped = load_many(copy.deepcopy(base), dirs, mode="grouped")
    gathered = load_many(copy.deepcopy(base), dirs, mode="gathered")
    with torch.no_grad():
        a = grouped(input_ids=ids, adapter_ids=rows).logits
        b = gathered(input_ids=ids, adapter_ids=rows).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_a_is_computed_once_per_layer(llama_adapters, monkeypatch):
    base, dirs = llama_adapters
    multi = load_many(copy.deepcopy(base), dirs)
    calls = []
    layer = next(m for _, m in multi.layers())
    real = layer.layout.project
    monkeypatch.setattr(layer.layout, "project", lambda x, a: calls.append(x.shape) or real(x, a))
    ids = torch.randint(0, 64, (4, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        multi(input_ids=ids, adapter_ids=[0, 1, 2, 1])
    assert calls == [torch.Size([4, 5, 32])]  # one projection for all four rows and three adapters


def test_generate_with_per_row_adapters(llama_adapters):
    base, dirs = llama_adapters
    multi = load_many(copy.deepcopy(base), dirs)
    ids = torch.randint(0, 64, (2, 4), generator=torch.Generator().manual_seed(3))
    out = multi.generate(input_ids=ids, attention_mask=torch.ones_like(ids), adapter_ids=[1, 2],
                         max_new_tokens=3, do_sample=False)
    for r, k in enumerate([1, 2]):
        single = asymlora.load_adapter(copy.deepcopy(base), dirs[k])
        ref = single.generate(input_ids=ids[r:r + 1], attention_mask=torch.ones_like(ids[r:r + 1]),
                              max_new_tokens=3, do_sample=False)
        assert torch.equal(out[r], ref[0])


def test_conv_and_conv1d_layers(tmp_path):
    torch.manual_seed(0)
    base = TinyNet().eval()
    dirs = []
    for i in range(2):
        model = copy.deepcopy(base)
        asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=3, targets=["conv", "proj", "mlp.0"]))
        randomize_factors(model, seed=i)
        dirs.append(asymlora.save_adapter(model, tmp_path / f"c{i}"))
    x = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    multi = load_many(copy.deepcopy(base), dirs, mode="gathered")
    with torch.no_grad():
        out = multi(x, adapter_ids=[1, 0, 1])
        for r, k in enumerate([1, 0, 1]):
            single = asymlora.load_adapter(copy.deepcopy(base), dirs[k])
            assert torch.allclose(out[r], single(x[r:r + 1])[0], atol=1e-5)
    gpt = tiny_gpt2()
    gdirs = []
    for i in range(2):
        model = copy.deepcopy(gpt)
        asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=2, targets=["c_attn"]))
        randomize_factors(model, seed=i)
        gdirs.append(asymlora.save_adapter(model, tmp_path / f"g{i}"))
    ids = torch.randint(0, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    multi = load_many(copy.deepcopy(gpt), gdirs)
    with torch.no_grad():
        out = multi(ids, adapter_ids=[1, 0]).logits
        for r, k in enumerate([1, 0]):
            single = asymlora.load_adapter(copy.deepcopy(gpt), gdirs[k])
            assert torch.allclose(out[r], single(ids).logits[r], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def distinct_a_adapters(tmp_path_factory, llama_adapters):
    """Adapters with other A's: B-only of two other seeds (one of them twice) and a LoRA that trained A."""
    base, shared = llama_adapters
    tmp = tmp_path_factory.mktemp("distinct")
    dirs = [shared[0]]
    for i, (preset, seed) in enumerate([("b-only", 11), ("b-only", 12), ("b-only", 11), ("lora", 5)]):
        model = copy.deepcopy(base)
        asymlora.inject(model, asymlora.AdapterConfig.preset(preset, rank=4, alpha=8.0, seed=seed))
        randomize_factors(model, seed=60 + i, scale=0.3)
        dirs.append(asymlora.save_adapter(model, tmp / f"d{i}"))
    return base, dirs


@pytest.mark.parametrize("mode", ["auto", "gathered", "grouped"])
def test_adapters_with_different_a_equal_one_adapter_at_a_time(distinct_a_adapters, mode):
    base, dirs = distinct_a_adapters
    ids = torch.randint(0, 64, (7, 9), generator=torch.Generator().manual_seed(5))
    rows = [3, 0, 4, None, 1, 2, 3]
    multi = load_many(copy.deepcopy(base), dirs, mode=mode)
    with torch.no_grad():
        out = multi(input_ids=ids, adapter_ids=rows).logits
    ref = _one_at_a_time(base, dirs, ids, rows)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(out[3], ref[3])  # the base row: exactly the base model
    with torch.no_grad():  # a whole batch on one adapter whose A is not the first: still bit for bit
        assert torch.equal(multi(input_ids=ids, adapter_ids=[4] * 7).logits, _one_at_a_time(base, dirs, ids, [4] * 7))
    # with autograd on, the expansion is not added into the base output in place: the same values
    assert torch.allclose(multi(input_ids=ids, adapter_ids=rows).logits.detach(), out, rtol=1e-6, atol=1e-7)


def test_each_distinct_a_is_kept_once_and_projected_in_one_product(distinct_a_adapters, monkeypatch):
    base, dirs = distinct_a_adapters
    multi = load_many(copy.deepcopy(base), dirs)
    for _, layer in multi.layers():
        # seeds 5, 11, 12, 11 and a LoRA: four distinct A's, the second seed-11 adapter points at the first
        assert layer.num_distinct_a == 4 and layer.a_index.tolist() == [0, 1, 2, 1, 3, 0]
        assert tuple(layer.lora_As.shape) == (4, 4, layer.layout.d_in)
        with pytest.raises(ServingError, match="different A"):
            layer.lora_A
    layer = next(m for _, m in multi.layers())
    calls = []
    for name in ("project", "project_rows"):
        real = getattr(layer.layout, name)
        monkeypatch.setattr(layer.layout, name, lambda x, a, real=real, name=name: calls.append(name) or real(x, a))
    ids = torch.randint(0, 64, (4, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        multi(input_ids=ids, adapter_ids=[0, 1, 4, 3])
    assert calls == ["project_rows"]  # one batched product for four rows and their three different A's


def test_distinct_matrices_hashes_bit_identical_and_tolerates_on_request():
    from asymlora.serving import distinct_matrices

    a = torch.randn(3, 5)
    reps, index = distinct_matrices([a, a.clone(), a + 1e-7, -a])
    assert len(reps) == 3 and index == [0, 0, 1, 2]
    reps, index = distinct_matrices([a, a.clone(), a + 1e-7, -a], tolerance=1e-5)
    assert len(reps) == 2 and index == [0, 0, 0, 1]


def test_refusals_and_bad_ids(llama_adapters, tmp_path):
    base, dirs = llama_adapters
    other = copy.deepcopy(base)
    asymlora.inject(other, asymlora.AdapterConfig.preset("b-only", rank=2, seed=5))
    odir = asymlora.save_adapter(other, tmp_path / "other-rank")
    with pytest.raises(ServingError, match="cannot share one batch.*another rank"):
        load_many(copy.deepcopy(base), [dirs[0], odir])
    fewer = copy.deepcopy(base)
    asymlora.inject(fewer, asymlora.AdapterConfig.preset("b-only", rank=4, seed=5, targets=["q_proj"]))
    fdir = asymlora.save_adapter(fewer, tmp_path / "fewer-layers")
    with pytest.raises(ServingError, match="cannot share one batch.*other layers"):
        load_many(copy.deepcopy(base), [dirs[0], fdir])
    multi = load_many(copy.deepcopy(base), dirs)
    ids = torch.randint(0, 64, (2, 5))
    with pytest.raises(ServingError, match="one per row"):
        multi(input_ids=ids, adapter_ids=[0, 1, 2])
    with pytest.raises(ServingError, match="unknown adapter"):
        multi(input_ids=ids, adapter_ids=["nope", 0])
    with pytest.raises(ServingError, match="out of range"):
        multi(input_ids=ids, adapter_ids=[0, 7])
    with pytest.raises(ServingError, match="no adapter ids"):
        multi.model(input_ids=ids)
    assert all(isinstance(m, MultiAdapterLayer) for _, m in multi.layers())
    plain = multi.unload()
    assert not any(isinstance(m, (MultiAdapterLayer, asymlora.AdaptedLayer)) for m in plain.modules())
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, base(ids).logits)


def test_adapters_with_different_trained_heads_are_refused(tmp_path):
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    dirs = []
    for i in range(2):
        model = copy.deepcopy(net)
        asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=2, targets=["0"], train_modules=["2"]))
        with torch.no_grad():
            model[2].weight.add_(i)
        dirs.append(asymlora.save_adapter(model, tmp_path / f"h{i}"))
    with pytest.raises(ServingError, match="different values"):
        load_many(copy.deepcopy(net), dirs)
