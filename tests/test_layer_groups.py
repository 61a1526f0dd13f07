"""The grouped per-layer table of checkpoint format 2: names, ranges and summed fingerprints."""

import pytest

from asymlora.layer_groups import decode_index, encode_index, expand_groups, group_layers, split_name


def _entry(d_in, fp=None):
    a = {"stored": False, **({"fingerprint": fp} if fp else {})}
    return {"d_in": d_in, "d_out": 8, "rank": 2, "scale": 2.0, "A": a, "B": {"stored": True}}


def test_names_split_into_template_and_slots_and_back():
    assert split_name("model.layers.12.mlp.up_proj") == ("model.layers.{}.mlp.up_proj", (12,))
    assert split_name("enc.3.blocks.7.q") == ("enc.{}.blocks.{}.q", (3, 7))
    assert split_name("enc.3.blocks.7.q", variable={1}) == ("enc.3.blocks.{}.q", (7,))
    assert split_name("odd{name}.0")[0].format(0) == "odd{name}.0"  # braces in a name survive


@pytest.mark.parametrize("slots", [[(0,), (1,), (2,), (5,), (7,), (8,)], [(3,)], [(0, 1), (2, 3)], [()]])
def test_index_round_trips(slots):
    assert decode_index(encode_index(slots)) == sorted(slots)


def test_index_of_one_slot_is_run_length_coded():
    assert encode_index([(v,) for v in [0, 1, 2, 5, 7, 8]]) == "0-2,5,7-8"


def test_alike_layers_form_one_group_with_summed_fingerprints():
    entries = {f"model.layers.{i}.{m}": _entry(1536 if m == "down" else 576, [float(i), 1.0, 0.0, 0.0, 2.0])
               for i in range(30) for m in ("q", "down")}
    entries["model.layers.4.q"] = _entry(576, [4.0, 1.0, 0.0, 0.0, 2.0]) | {"rank": 4}  # a rank_pattern override
    groups = group_layers(entries)
    assert [(g["name"], g["index"]) for g in groups] == [
        ("model.layers.{}.q", "0-3,5-29"), ("model.layers.{}.down", "0-29"), ("model.layers.4.q", [])]
    assert groups[1]["A"]["fingerprint"] == [float(sum(range(30))), 30.0, 0.0, 0.0, 60.0]
    layers, checks = expand_groups(groups)
    assert set(layers) == set(entries)
    assert all("fingerprint" not in e["A"] for e in layers.values())
    assert layers["model.layers.4.q"]["rank"] == 4 and layers["model.layers.9.down"]["d_in"] == 1536
    down = next(c for c in checks if c["label"] == "model.layers.{}.down [0-29]")
    assert down["factor"] == "A" and len(down["layers"]) == 30


def test_malformed_groups_are_named():
    with pytest.raises(ValueError, match="no entry for factor B"):
        expand_groups([{"name": "x.{}", "index": "0-1", "A": {"stored": True}}])
    with pytest.raises(ValueError, match="appears in two layer groups"):
        g = {"name": "x.{}", "index": "0-1", "A": {"stored": True}, "B": {"stored": True}}
        expand_groups([g, dict(g, index="1")])
    with pytest.raises(ValueError, match="malformed layer group"):
        expand_groups(["x"])
