import json

import pytest

from asymlora import PRESETS, AdapterConfig, Factor


def test_presets_map_to_the_papers_policies():
    lora = AdapterConfig.preset("lora")
    assert (lora.a, lora.b) == (Factor("kaiming", True), Factor("zeros", True))
    b_only = AdapterConfig.preset("b-only")
    # B-only: A (input projection) frozen orthogonal, B (output projection) trained from zero
    assert (b_only.a, b_only.b) == (Factor("orthogonal", False), Factor("zeros", True))
    assert b_only.notation == "B̂_0 A_rand"
    a_only = AdapterConfig.preset("a-only")
    assert (a_only.a, a_only.b) == (Factor("zeros", True), Factor("orthogonal", False))
    assert a_only.notation == "B_rand Â_0"


def test_every_row_of_tables_5_and_10_is_expressible():
    rows = {"B̂_0 A_V", "B̂_0 A_rand", "B̂_0 A_km", "B_U Â_0", "B_rand Â_0", "B_km Â_0",
            "B̂_0 Â_V", "B̂_0 Â_rand", "B̂_0 Â_km", "B̂_U Â_0", "B̂_rand Â_0", "B̂_km Â_0"}
    assert {AdapterConfig.preset(name).notation for name in PRESETS} == rows


def test_default_alpha_is_twice_the_rank_and_overrides_apply():
    cfg = AdapterConfig.preset("b-only", rank=8, targets=["q"], seed=3, train_modules=["classifier"])
    assert cfg.alpha_for(8) == 16.0 and cfg.seed == 3 and cfg.train_modules == ("classifier",)
    assert AdapterConfig.preset("lora", rank=8, alpha=4).alpha_for(8) == 4.0


def test_json_round_trip():
    cfg = AdapterConfig.preset("a-only-svd", rank=4, alpha=3.0, targets="layer\\.\\d+\\.q", seed=11,
                               rank_pattern={"v": 2}, alpha_pattern={"v": 1.5}, dropout=0.1, scaling="rslora")
    back = AdapterConfig.from_dict(json.loads(cfg.to_json()))
    assert back == cfg


@pytest.mark.parametrize("kwargs, message", [
    (dict(rank=0), "rank must be ≥ 1"),
    (dict(rank=-3), "rank must be ≥ 1"),
    (dict(rank=2.5), "rank must be an int"),
    (dict(rank_pattern={"q": 0}), "rank_pattern"),
    (dict(dropout=1.0), "dropout"),
    (dict(scaling="sqrt"), "scaling"),
    (dict(alpha=0), "alpha must be a finite number > 0"),
    (dict(targets=[]), "targets is empty"),
    (dict(targets="(unclosed"), "valid regular expression"),
])
def test_bad_values_are_refused_with_a_message(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        AdapterConfig.preset("b-only", **kwargs)


@pytest.mark.parametrize("a, b, message", [
    (Factor("orthogonal", False), Factor("zeros", False), "both factors are frozen"),
    (Factor("zeros", True), Factor("zeros", True), "both start at zero"),
    (Factor("zeros", False), Factor("orthogonal", True), "A is frozen at zero"),
    (Factor("orthogonal", True), Factor("zeros", False), "B is frozen at zero"),
])
def test_policies_that_can_never_learn_are_refused(a, b, message):
    with pytest.raises(ValueError, match=message):
        AdapterConfig(a=a, b=b)


def test_unknown_preset_and_init():
    with pytest.raises(ValueError, match="choose one of"):
        AdapterConfig.preset("c-only")
    with pytest.raises(ValueError, match="init must be one of"):
        Factor("xavier", True)
