"""Adapter folders written by earlier asymlora versions (tests/fixtures/) keep loading to the same outputs.

Each folder holds the adapter as that version saved it, the base model's weights and the adapted
model's input and output (tests/fixtures/make_fixtures.py says which commit wrote which).
"""

from pathlib import Path

import pytest
import torch
from fixtures.make_fixtures import FixtureNet
from safetensors.torch import load_file

import asymlora

FIXTURES = Path(__file__).parent / "fixtures"
FOLDERS = sorted(p.name for p in FIXTURES.iterdir() if (p / "adapter_config.json").is_file())


def _base(folder: Path) -> FixtureNet:
    net = FixtureNet().eval()
    net.load_state_dict(load_file(str(folder / "base.safetensors")))
    return net


def test_every_format_has_fixtures():
    assert {name.split("-")[0] for name in FOLDERS} >= {"format1", "format2"}
    assert len(FOLDERS) >= 9


@pytest.mark.parametrize("name", FOLDERS)
def test_old_adapter_folders_load_to_the_saved_outputs(name):
    folder = FIXTURES / name
    expected = load_file(str(folder / "expected.safetensors"))
    model = asymlora.load_adapter(_base(folder), folder)
    # equal up to float32 round-off: another BLAS or thread count may round the base layers differently
    torch.testing.assert_close(model(expected["input"]), expected["output"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", FOLDERS)
def test_old_adapter_folders_give_their_factors(name):
    folder = FIXTURES / name
    model = asymlora.load_adapter(_base(folder), folder)
    factors = asymlora.read_factors(folder, base_model=_base(folder))
    for layer_name, layer in asymlora.adapted_layers(model):
        a, b = factors[layer_name]
        assert torch.equal(a, layer.lora_A.float()) and torch.equal(b, layer.lora_B.float())
