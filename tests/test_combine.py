"""asymlora.combine: exact Σ wᵢ ΔWᵢ for adapters that share a factor, clear refusals otherwise."""

import copy

import pytest
import torch
from conftest import randomize_factors, tiny_bert

import asymlora
from asymlora.combine import CombineError, combine, combine_factors, shared_factor

WEIGHTS = [1.0, 0.5, -0.75]


def _save(base, tmp_path, name, preset="b-only", seed=0, factor_seed=1, **overrides):
    model = copy.deepcopy(base)
    asymlora.inject(model, asymlora.AdapterConfig.preset(preset, rank=4, targets=["query", "value"], seed=seed, **overrides))
    randomize_factors(model, seed=factor_seed, scale=0.2)
    return asymlora.save_adapter(model, tmp_path / name), model


def _exact(models, weights):
    """Σ wᵢ sᵢ Bᵢ Aᵢ per layer, in float64, from the adapted models themselves."""
    out = {}
    for w, m in zip(weights, models):
        for name, layer in asymlora.adapted_layers(m):
            d = w * layer.delta_weight().double()
            out[name] = out[name] + d if name in out else d
    return out


def test_combined_delta_is_exactly_the_weighted_sum_and_outputs_match(tmp_path):
    base = tiny_bert()
    saved = [_save(base, tmp_path, f"t{i}", factor_seed=10 + i) for i in range(3)]
    dirs, models = zip(*saved)
    exact = _exact(models, WEIGHTS)
    combined = combine(copy.deepcopy(base), dirs, WEIGHTS)
    layers = dict(asymlora.adapted_layers(combined))
    assert set(layers) == set(exact)
    for name, layer in layers.items():
        rel = (layer.delta_weight().double() - exact[name]).norm() / exact[name].norm()
        assert rel < 1e-6, (name, float(rel))
        # still one rank-4 adapter with the shared, frozen A
        assert layer.rank == 4 and not layer.is_trainable("A")
        assert torch.equal(layer.lora_A, dict(asymlora.adapted_layers(models[0]))[name].lora_A)
    # outputs equal the base model with the exact ΔW merged into its weights
    ref = copy.deepcopy(base)
    modules = dict(ref.named_modules())
    with torch.no_grad():
        for name, delta in exact.items():
            w = modules[name].weight
            w.copy_((w.double() + delta).float())
    ids = torch.randint(0, 100, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(combined(ids).logits, ref(ids).logits, atol=1e-5)


def test_combined_adapter_saves_and_reloads_with_its_shared_a_as_a_seed(tmp_path):
    base = tiny_bert()
    dirs = [_save(base, tmp_path, f"t{i}", factor_seed=20 + i)[0] for i in range(2)]
    combined = combine(copy.deepcopy(base), dirs, [0.3, 0.7])
    out = asymlora.save_adapter(combined, tmp_path / "mix")
    meta = asymlora.checkpoint.read_meta(out)
    assert all(not e["A"]["stored"] and e["B"]["stored"] for e in meta["layers"].values())
    again = asymlora.load_adapter(copy.deepcopy(base), out)
    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(again(ids).logits, combined(ids).logits)


def test_different_scales_are_folded_into_the_sum(tmp_path):
    base = tiny_bert()
    d1, m1 = _save(base, tmp_path, "a", factor_seed=1, alpha=8.0)
    d2, m2 = _save(base, tmp_path, "b", factor_seed=2, alpha=2.0)
    exact = _exact([m1, m2], [1.0, 1.0])
    combined = combine(copy.deepcopy(base), [d1, d2])
    for name, layer in asymlora.adapted_layers(combined):
        assert torch.allclose(layer.delta_weight().double(), exact[name], atol=1e-6)


def test_lora_adapters_whose_a_differ_are_refused_with_a_clear_error(tmp_path):
    base = tiny_bert()
    d1, _ = _save(base, tmp_path, "bonly", factor_seed=1)
    d2, _ = _save(base, tmp_path, "lora", preset="lora", factor_seed=2)
    with pytest.raises(CombineError, match=r"do not share a factor.*A \(input projection\) differ"):
        combine(copy.deepcopy(base), [d1, d2], [1.0, 1.0])


def test_b_only_adapters_with_another_seed_are_refused(tmp_path):
    base = tiny_bert()
    d1, _ = _save(base, tmp_path, "s0", seed=0, factor_seed=1)
    d2, _ = _save(base, tmp_path, "s1", seed=1, factor_seed=2)
    with pytest.raises(CombineError, match="same seed"):
        combine(copy.deepcopy(base), [d1, d2])


def test_bad_arguments_are_clear_errors(tmp_path):
    base = tiny_bert()
    d1, _ = _save(base, tmp_path, "a", factor_seed=1)
    with pytest.raises(CombineError, match="weights"):
        combine(copy.deepcopy(base), [d1], [1.0, 2.0])
    with pytest.raises(CombineError, match="finite"):
        combine(copy.deepcopy(base), [d1], [float("nan")])
    with pytest.raises(TypeError, match="list"):
        combine(copy.deepcopy(base), d1)
    other = copy.deepcopy(base)
    asymlora.inject(other, asymlora.AdapterConfig.preset("b-only", rank=4, targets=["query"]))
    d3 = asymlora.save_adapter(other, tmp_path / "other-layers")
    with pytest.raises(CombineError, match="other layers"):
        combine(copy.deepcopy(base), [d1, d3])


def test_a_only_adapters_sharing_b_sum_their_a():
    g = torch.Generator().manual_seed(0)
    b = torch.randn(6, 2, generator=g)
    facs = [{"l": (torch.randn(2, 5, generator=g), b.clone())} for _ in range(3)]
    assert shared_factor(facs) == "B"
    out = combine_factors(facs, [{"l": 2.0}] * 3, [1.0, -1.0, 0.5], {"l": 2.0})
    a, b_out = out["l"]
    assert torch.equal(b_out, b)
    expected = sum(w * 2.0 * b @ f["l"][0] for w, f in zip([1.0, -1.0, 0.5], facs))
    assert torch.allclose(2.0 * b_out @ a, expected, atol=1e-5)


def test_train_modules_are_combined_as_task_vectors(tmp_path):
    base = tiny_bert()
    dirs, heads = [], []
    for i in range(2):
        model = copy.deepcopy(base)
        asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=4, targets=["query"],
                                                             train_modules=["classifier"]))
        randomize_factors(model, seed=i)
        with torch.no_grad():
            model.classifier.weight.add_(0.1 * (i + 1))
        heads.append(model.classifier.weight.detach().clone())
        dirs.append(asymlora.save_adapter(model, tmp_path / f"h{i}"))
    theta0 = base.classifier.weight.detach().clone()
    combined = combine(copy.deepcopy(base), dirs, [0.5, 2.0])
    expected = theta0 + 0.5 * (heads[0] - theta0) + 2.0 * (heads[1] - theta0)
    assert torch.allclose(combined.classifier.weight, expected, atol=1e-6)
    with pytest.raises(CombineError, match="trains full modules"):
        combine(copy.deepcopy(base), dirs, [0.5, 2.0], train_modules="error")
