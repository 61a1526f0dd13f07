"""Defects the fuzz suite (tests/fuzz) found in the core; each test failed before its fix."""

import time

import pytest
import torch
from fuzz.edit import as_peft_native, edit_config, rewrite_tensors
from fuzz.models import TARGETS, build
from fuzz.runner import run
from fuzz.worker import same_state, state

import asymlora
from asymlora import CheckpointError


def _peft_folder(tmp_path, native=True):
    model = build("net")
    asymlora.inject(model, asymlora.AdapterConfig.preset("lora", rank=3, targets=TARGETS["net"],
                                                         train_modules=["classifier"]))
    folder = tmp_path / "peft"
    asymlora.export_peft(model, folder)
    if native:
        as_peft_native(folder)
    return folder


def _refused(folder, match):
    model = build("net")
    before = state(model)
    with pytest.raises(CheckpointError, match=match):
        asymlora.import_peft(model, folder)
    assert same_state(before, state(model))


def test_a_huge_peft_rank_is_refused_before_anything_is_allocated(tmp_path):
    """Fuzz seed 1 case 145: r 3 -> 1000003 in a PEFT config ran past the 20 s limit (it built
    rank-10⁶ layers before comparing their shapes with the tensors)."""
    folder = _peft_folder(tmp_path)
    edit_config(folder, lambda m: m.__setitem__("r", 1_000_003))
    t0 = time.perf_counter()
    _refused(folder, r"rank 1000003.*lora_A|lora_A.*rank")
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("key, dtype", [("base_model.model.mlp.2.lora_B.weight", torch.bfloat16),
                                        ("base_model.model.proj.lora_A.weight", torch.float16),
                                        ("base_model.model.classifier.bias", torch.float16)])
def test_a_peft_tensor_of_another_dtype_than_its_fellows_is_refused(tmp_path, native, key, dtype):
    """Fuzz seed 1 cases 756, 1254: one factor cast to float16/bfloat16 loaded, rounded, without an error.
    PEFT writes every factor in one dtype (and the modules_to_save parameters in one dtype)."""
    folder = _peft_folder(tmp_path, native)
    rewrite_tensors(folder, lambda t: t.__setitem__(key, t[key].to(dtype)))
    _refused(folder, "dtype")


def test_a_peft_file_in_one_other_dtype_still_loads(tmp_path):
    """A PEFT adapter saved from a half-precision model holds every factor in that dtype: it loads."""
    folder = _peft_folder(tmp_path)
    rewrite_tensors(folder, lambda t: t.update({k: v.to(torch.bfloat16) for k, v in t.items() if "lora_" in k}))
    model = asymlora.import_peft(build("net"), folder)
    assert len(list(asymlora.adapted_layers(model))) == 4


@pytest.mark.parametrize("index", [2737, 9468])
def test_a_dtype_field_that_is_a_list_or_object_is_a_clean_error(tmp_path, index):
    """Found by ``python -m fuzz --cases 10000 --seed 1``: a re-signed ``dtype`` of ``[[["deep"]]]`` or
    ``{"zz": 1}`` (a factor's, a train parameter's) raised a raw ``TypeError: unhashable type``."""
    report = run(1, seed=1, start=index, work=tmp_path)
    assert report.counts["clean-error"] == 1, report.defects
