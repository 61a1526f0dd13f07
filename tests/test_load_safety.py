"""Checkpoints that cannot load wrong (issue 15, findings 1–8): each test failed before the fix.

A load either gives exactly the saved model or raises a clear ``CheckpointError`` / ``ValueError``
naming what is wrong, and a failed load leaves the base model as it was.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import TinyNet, randomize_factors
from fuzz.edit import as_peft_native, edit_config, read_config, resign, rewrite_tensors, write_config

import asymlora
from asymlora import CheckpointError

TARGETS = ["conv", "proj", "mlp.0", "mlp.2"]
ROOT = Path(__file__).resolve().parents[1]
SRC = Path(asymlora.__file__).resolve().parents[1]  # the asymlora under test, for the subprocesses


def _fresh(eval_mode=True):
    torch.manual_seed(0)
    net = TinyNet()
    return net.eval() if eval_mode else net


def _saved(tmp_path, preset="b-only", name="ad", **kw):
    net = _fresh()
    kw.setdefault("train_modules", ["classifier"])
    asymlora.inject(net, asymlora.AdapterConfig.preset(preset, rank=3, targets=TARGETS, **kw))
    randomize_factors(net)
    with torch.no_grad():
        net.classifier.bias.add_(0.5)
    folder = tmp_path / name
    asymlora.save_adapter(net, folder)
    return net, folder


def _state(model):
    """Everything a load could change: module types, tensors, requires_grad, training flags."""
    return ([(n, type(m).__name__, m.training) for n, m in model.named_modules()],
            {k: v.clone() for k, v in model.state_dict().items()},
            [(n, p.requires_grad) for n, p in model.named_parameters()])


def _same_state(a, b):
    return a[0] == b[0] and a[2] == b[2] and a[1].keys() == b[1].keys() and all(
        torch.equal(a[1][k], b[1][k]) for k in a[1])


def _refused(folder, match=None, base=None):
    """Loading must raise a clean CheckpointError and leave the model exactly as it was."""
    model = base if base is not None else _fresh()
    before = _state(model)
    with pytest.raises(CheckpointError, match=match):
        asymlora.load_adapter(model, folder)
    assert _same_state(before, _state(model)), "a failed load changed the model"
    return model


# ---- 1. dropout follows the training mode of the replaced module ------------------------------------

def test_1_layers_loaded_into_an_eval_model_are_in_eval_mode(tmp_path, tiny_input):
    _, folder = _saved(tmp_path, dropout=0.3)
    model = asymlora.load_adapter(_fresh(eval_mode=True), folder)
    assert not any(layer.training for _, layer in asymlora.adapted_layers(model))
    assert torch.equal(model(tiny_input), model(tiny_input))  # no dropout at inference


def test_1_injected_layers_take_the_mode_of_the_module_they_replace():
    net = _fresh(eval_mode=True)
    net.proj.train()  # one module left in training mode on purpose
    asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=2, targets=TARGETS, dropout=0.2))
    modes = {n: layer.training for n, layer in asymlora.adapted_layers(net)}
    assert modes == {"conv": False, "proj": True, "mlp.0": False, "mlp.2": False}


def test_1_import_peft_into_an_eval_model_is_deterministic(tmp_path, tiny_input):
    net, _ = _saved(tmp_path, preset="lora", dropout=0.3)
    asymlora.export_peft(net, tmp_path / "peft")
    model = asymlora.import_peft(_fresh(eval_mode=True), tmp_path / "peft")
    assert torch.equal(model(tiny_input), model(tiny_input))


# ---- 2. the config is not trusted ------------------------------------------------------------------

def _group(meta, name):
    return next(g for g in meta["layer_groups"] if g["name"] == name)


def test_2_a_stored_factor_flipped_to_not_stored_is_refused(tmp_path):
    _, folder = _saved(tmp_path)
    edit_config(folder, lambda m: _group(m, "proj")["B"].__setitem__("stored", False))
    _refused(folder)


def test_2_an_edited_alpha_that_disagrees_with_the_layer_scales_is_refused(tmp_path):
    _, folder = _saved(tmp_path)
    edit_config(folder, lambda m: m["config"].__setitem__("alpha", 1.0))
    _refused(folder)


def test_2_duplicate_json_keys_are_refused(tmp_path):
    _, folder = _saved(tmp_path)
    text = (folder / "adapter_config.json").read_text().strip()
    assert text.endswith("}")
    (folder / "adapter_config.json").write_text(text[:-1] + ',"notation":"x"}')  # the key is there already
    _refused(folder, match="duplicate key 'notation'")


@pytest.mark.parametrize("value", ["delete", float("inf"), float("nan"), "1.0", [1.0, 2.0], None])
def test_2_a_missing_or_non_finite_fingerprint_of_a_regenerated_factor_is_refused(tmp_path, value):
    _, folder = _saved(tmp_path)

    def edit(meta):
        info = _group(meta, "proj")["A"]
        if value == "delete":
            del info["fingerprint"]
        else:
            info["fingerprint"] = [value] * 5 if not isinstance(value, list) and value is not None else value
    edit_config(folder, edit)
    _refused(folder)
    resign(folder)  # the checksums made to match again: the fingerprint itself is checked
    _refused(folder, match="fingerprint|Infinity is not|NaN is not")


# ---- 3. tensors are not trusted ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.bool,
                                   torch.complex64])
def test_3_a_tensor_of_another_dtype_is_refused(tmp_path, dtype):
    _, folder = _saved(tmp_path)
    rewrite_tensors(folder, lambda t: t.__setitem__("layers.proj.lora_B", t["layers.proj.lora_B"].to(dtype)))
    _refused(folder, match="dtype")


def test_3_a_tensor_the_config_does_not_name_is_refused(tmp_path):
    _, folder = _saved(tmp_path)
    rewrite_tensors(folder, lambda t: t.__setitem__("layers.proj.lora_A", torch.zeros(3, 96)))
    _refused(folder, match="layers.proj.lora_A")


def test_3_a_missing_train_module_tensor_is_refused(tmp_path):
    _, folder = _saved(tmp_path)
    rewrite_tensors(folder, lambda t: t.pop("train_modules.classifier.bias"))
    _refused(folder, match="classifier.bias")


def test_3_a_train_modules_key_cannot_overwrite_a_parameter_of_an_unlisted_module(tmp_path):
    _, folder = _saved(tmp_path)
    rewrite_tensors(folder, lambda t: t.__setitem__("train_modules.mlp.0.bias", torch.full((40,), 9.0)))
    _refused(folder, match="mlp.0.bias")


# ---- 4. a failed load changes nothing --------------------------------------------------------------

def test_4_a_load_failing_on_the_second_head_tensor_leaves_the_head_as_it_was(tmp_path):
    _, folder = _saved(tmp_path)
    rewrite_tensors(folder, lambda t: t.__setitem__("train_modules.classifier.bias", torch.zeros(4)))
    model = _refused(folder)
    _, good = _saved(tmp_path, name="good")
    asymlora.load_adapter(model, good)  # a retry with a good folder works


def test_4_a_load_failing_after_the_layers_are_built_leaves_no_adapters(tmp_path):
    _, folder = _saved(tmp_path)
    edit_config(folder, lambda m: _group(m, "mlp.2").__setitem__("d_out", 25))
    model = _refused(folder)
    assert not list(asymlora.adapted_layers(model))


def test_4_import_peft_failing_on_one_layer_leaves_the_model_as_it_was(tmp_path):
    net, _ = _saved(tmp_path, preset="lora")
    asymlora.export_peft(net, tmp_path / "peft")
    rewrite_tensors(tmp_path / "peft", lambda t: t.__setitem__("base_model.model.mlp.2.lora_B.weight",
                                                               torch.zeros(24, 2)))
    model = _fresh()
    before = _state(model)
    with pytest.raises(CheckpointError):
        asymlora.import_peft(model, tmp_path / "peft")
    assert _same_state(before, _state(model))


# ---- 5. a save is atomic per folder ----------------------------------------------------------------

def test_5_a_crash_at_any_point_of_a_re_save_leaves_the_old_or_the_new_adapter(tmp_path, monkeypatch, tiny_input):
    old, folder = _saved(tmp_path)
    old_out = old(tiny_input)
    new, _ = _saved(tmp_path, name="other")
    with torch.no_grad():
        new.proj.lora_B.add_(1.0)
    new_out = new(tiny_input)
    real_replace, crashes = os.replace, 0
    for crash_at in range(1, 20):
        calls = []

        def replace(src, dst, _at=crash_at, _calls=calls):
            _calls.append(dst)
            if len(_calls) == _at:
                raise KeyboardInterrupt("killed")
            return real_replace(src, dst)
        monkeypatch.setattr(os, "replace", replace)
        try:
            asymlora.save_adapter(new, folder)
            finished = True
        except KeyboardInterrupt:
            finished, crashes = False, crashes + 1
        monkeypatch.setattr(os, "replace", real_replace)
        out = asymlora.load_adapter(_fresh(), folder)(tiny_input)
        assert torch.equal(out, old_out) or torch.equal(out, new_out), f"crash at replace #{crash_at}"
        if finished:
            assert torch.equal(out, new_out)
            break
        asymlora.save_adapter(old, folder)  # back to the old adapter for the next crash point
    assert crashes >= 2


def test_5_temporary_files_of_a_killed_save_are_removed_by_the_next_save(tmp_path):
    net, folder = _saved(tmp_path)
    script = textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        import asymlora
        from conftest import TinyNet
        torch.manual_seed(0)
        net = TinyNet()
        asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=3, targets={TARGETS!r}))
        os.replace = lambda *a, **k: os._exit(9)  # killed right before the first rename
        asymlora.save_adapter(net, {str(folder)!r})
    """)
    env = dict(os.environ, PYTHONPATH=str(SRC))
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == 9
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")], "the killed save left no temporary file"
    asymlora.save_adapter(net, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["adapter.safetensors", "adapter_config.json"]


# ---- 6. a file cannot make the loader hang or exhaust memory ---------------------------------------

LIMITED = """
import resource, sys, time, torch
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
sys.path.insert(0, {tests!r})
import asymlora
from conftest import TinyNet
for path in {paths!r}:
    torch.manual_seed(0)
    t0 = time.time()
    try:
        (asymlora.import_peft if "peft" in path else asymlora.load_adapter)(TinyNet().eval(), path)
        print("LOADED", path, flush=True)
    except (asymlora.CheckpointError, ValueError) as err:
        print("REFUSED", round(time.time() - t0, 2), path, type(err).__name__, str(err)[:200], flush=True)
"""


def test_6_pathological_sizes_ranges_templates_and_patterns_are_refused_quickly(tmp_path):
    cases = {
        "huge-range": lambda m: _group(m, "proj").__setitem__("index", "0-999999999999"),
        "format-template": lambda m: _group(m, "proj").__setitem__("name", "{:>999999999}"),
        "regex-targets": lambda m: m["config"].__setitem__("targets", "(.|.)*Z"),
        "regex-rank-pattern": lambda m: m["config"].__setitem__("rank_pattern", {"(.|.)*Z": 2}),
        "regex-exclude": lambda m: m["config"].__setitem__("exclude", ["(.|.)*Z"]),
        "rank-2-22": lambda m: (m["config"].__setitem__("rank", 2 ** 22), _group(m, "conv").__setitem__("rank", 2 ** 22)),
    }
    paths = []
    for name, edit in cases.items():
        _, folder = _saved(tmp_path, name=name)
        edit_config(folder, edit)
        paths.append(str(folder))
    net, _ = _saved(tmp_path, preset="lora", name="src")
    asymlora.export_peft(net, tmp_path / "peft")
    edit_config(tmp_path / "peft", lambda m: m.__setitem__("alpha_pattern", {"(.|.)*Z": 2.0}))
    paths.append(str(tmp_path / "peft"))
    code = LIMITED.format(tests=str(ROOT / "tests"), paths=paths)
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the loader hung; finished before: {err.stdout}")
    lines = [line for line in out.stdout.splitlines() if line.startswith(("REFUSED", "LOADED"))]
    assert len(lines) == len(paths) and all(line.startswith("REFUSED") for line in lines), out.stdout + out.stderr
    assert all(float(line.split()[1]) < 5.0 for line in lines), out.stdout


# ---- 7. clear errors, never raw ones ---------------------------------------------------------------

RAW = ("object is not", "unsupported operand", "invalid literal", "NoneType", "not subscriptable",
       "has no attribute", "positional argument", "could not convert", "unhashable", "must be str, not",
       "Traceback", "KeyError", "maximum recursion")


def _clean(err):
    text = str(err)
    assert not any(r in text for r in RAW), f"raw Python message: {text}"
    return text


@pytest.mark.parametrize("edit", [
    lambda m: _group(m, "proj")["A"].__setitem__("fingerprint", "abc"),
    lambda m: _group(m, "proj").pop("d_in"),
    lambda m: _group(m, "proj").__setitem__("rank", None),
    lambda m: m.__setitem__("config", None),
    lambda m: m["config"].__setitem__("a", None),
    lambda m: m["config"].__setitem__("rank", "3"),
    lambda m: m.__setitem__("layer_groups", None),
    lambda m: m.__setitem__("train_modules", [None]),
    lambda m: _group(m, "proj").__setitem__("index", "a-b"),
    lambda m: _group(m, "proj").__setitem__("index", [["x"]]),
    lambda m: 7,
    lambda m: [m],
], ids=["fp-string", "no-d_in", "rank-null", "config-null", "factor-null", "rank-string", "groups-null",
        "train-null", "index-letters", "index-list-letters", "bare-number", "list"])
def test_7_malformed_configs_give_clean_errors(tmp_path, edit):
    _, folder = _saved(tmp_path)
    edit_config(folder, edit)
    model = _fresh()
    before = _state(model)
    try:
        asymlora.load_adapter(model, folder)
    except CheckpointError as err:
        _clean(err)
    else:
        pytest.fail("loaded a malformed config")
    assert _same_state(before, _state(model))


def test_7_deeply_nested_json_is_a_clean_error(tmp_path):
    _, folder = _saved(tmp_path)
    meta = read_config(folder)
    (folder / "adapter_config.json").write_text(json.dumps(meta)[:-1] + ',"extra":' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(CheckpointError) as err:
        asymlora.load_adapter(_fresh(), folder)
    _clean(err.value)


@pytest.mark.parametrize("kwargs, field", [
    (dict(alpha="2"), "alpha"), (dict(dropout="0.1"), "dropout"), (dict(targets=5), "targets"),
    (dict(a="orthogonal"), "a"), (dict(alpha=float("inf")), "alpha"), (dict(alpha=True), "alpha"),
    (dict(alpha=float("nan")), "alpha"), (dict(rank_pattern={"proj": "2"}), "rank_pattern"),
    (dict(alpha_pattern={"proj": float("inf")}), "alpha_pattern"), (dict(exclude="proj"), "exclude"),
    (dict(targets=["proj", 3]), "targets"), (dict(train_modules="classifier"), "train_modules"),
    (dict(rank_pattern={"(unclosed": 2}), "rank_pattern"), (dict(exclude=["(unclosed"]), "exclude"),
    (dict(seed=1.5), "seed"),
])
def test_7_bad_config_values_are_value_errors_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field) as err:
        asymlora.AdapterConfig.preset("b-only", **kwargs)
    _clean(err.value)


@pytest.mark.parametrize("kwargs, field", [
    (dict(rank_pattern={"porj": 2}), "rank_pattern"), (dict(alpha_pattern={"porj": 2.0}), "alpha_pattern"),
    (dict(exclude=["porj"]), "exclude"),
])
def test_7_pattern_keys_that_match_no_layer_are_refused(kwargs, field):
    model = _fresh()
    before = _state(model)
    with pytest.raises(ValueError, match=f"{field}.*porj.*proj"):
        asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", targets=TARGETS, **kwargs))
    assert _same_state(before, _state(model))


# ---- 8. PEFT folders: no checksum, but no non-finite values or disagreeing tensors ----------------

def _peft(tmp_path):
    """A PEFT folder as PEFT writes it (no digest of its config in the tensor file)."""
    net, _ = _saved(tmp_path, preset="lora", name="src")
    asymlora.export_peft(net, tmp_path / "peft")
    as_peft_native(tmp_path / "peft")
    return tmp_path / "peft"


def test_8_an_exported_peft_folder_whose_config_was_edited_is_refused(tmp_path):
    net, _ = _saved(tmp_path, preset="lora", name="src")
    asymlora.export_peft(net, tmp_path / "peft")
    edit_config(tmp_path / "peft", lambda m: m.__setitem__("lora_alpha", 1.0))
    _peft_refused(tmp_path / "peft", match="not the config its tensor file was exported with")
    edit_config(tmp_path / "peft", lambda m: m.__setitem__("lora_alpha", 6.0))  # the value it was exported with
    edit_config(tmp_path / "peft", lambda m: m.__setitem__("base_model_name_or_path", "elsewhere"))  # informational
    asymlora.import_peft(_fresh(), tmp_path / "peft")


def _peft_refused(folder, match=None):
    model = _fresh()
    before = _state(model)
    with pytest.raises(CheckpointError, match=match) as err:
        asymlora.import_peft(model, folder)
    assert _same_state(before, _state(model))
    return _clean(err.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_8_peft_tensors_with_non_finite_values_are_refused(tmp_path, value):
    folder = _peft(tmp_path)

    def edit(t):
        t["base_model.model.proj.lora_B.weight"][0, 0] = value
    rewrite_tensors(folder, edit)
    _peft_refused(folder, match="finite")


def test_8_peft_tensors_whose_rank_disagrees_with_the_config_are_refused(tmp_path):
    folder = _peft(tmp_path)
    edit_config(folder, lambda m: m.__setitem__("r", 2))  # the tensors have rank 3
    _peft_refused(folder, match="shape")


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.complex64])
def test_8_peft_tensors_of_a_non_float_dtype_are_refused(tmp_path, dtype):
    folder = _peft(tmp_path)
    rewrite_tensors(folder, lambda t: t.__setitem__("base_model.model.proj.lora_A.weight",
                                                    t["base_model.model.proj.lora_A.weight"].to(dtype)))
    _peft_refused(folder, match="dtype")


def test_8_peft_config_fields_of_the_wrong_type_are_clean_errors(tmp_path):
    folder = _peft(tmp_path)
    for field, value in (("r", "3"), ("lora_alpha", None), ("rank_pattern", 5), ("modules_to_save", 5),
                         ("lora_dropout", "x"), ("use_rslora", "no")):
        meta = read_config(folder)
        original = meta[field]
        meta[field] = value
        write_config(folder, meta)
        assert repr(field) in _peft_refused(folder).replace(str(folder), "")
        meta[field] = original
        write_config(folder, meta)
