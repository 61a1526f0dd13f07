"""Methods, one run, the learning-rate sweep, grids and the report — on a tiny BERT and a toy task."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate")
pytest.importorskip("transformers")

import importlib  # noqa: E402

from toy import toy_loader, toy_model, toy_task, toy_tokenizer  # noqa: E402

import asymlora  # noqa: E402
from asymlora.config import PRESETS, AdapterConfig  # noqa: E402
from asymlora.experiments import (  # noqa: E402
    METHODS,
    Grid,
    GridError,
    Loader,
    MethodError,
    RunConflict,
    RunSpec,
    build_tables,
    collect,
    get_method,
    pick_lr,
    run,
    run_grid,
    write_report,
)
from asymlora.experiments.spec import settings_conflict  # noqa: E402
from asymlora.tasks.protocol import Limits  # noqa: E402
from asymlora.train import TrainConfig, evaluate, train  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
TARGETS = ("query", "value")
run_module = importlib.import_module("asymlora.experiments.run")  # (the package's `run` is the function)


@pytest.fixture(scope="module")
def task():
    return toy_task(n_train=192, n_val=48, n_test=48, extra_test=True)


@pytest.fixture
def loader(task):
    return toy_loader(task)


def encode_split(task, split, tok, max_length=64):
    return task.encode(split, tok, Limits(max_length=max_length))


def spec(**kw):
    base = dict(task="toy", model="toy", method="b-only", rank=4, epochs=2, batch_size=16, lrs=(1e-2,),
                targets=TARGETS, extra_tests=False, checkpoint_every=0)
    base.update(kw)
    return RunSpec(**base)


# --- methods ------------------------------------------------------------------------------------------
def test_every_preset_of_tables_5_and_10_is_a_method_with_the_paper_notation():
    for name in PRESETS:
        m = get_method(name)
        assert m.kind == "adapter" and m.notation == AdapterConfig.preset(name).notation
    assert get_method("b-only").display(16) == "B-only B̂_0 A_rand (r=16)"  # named, and in the paper's notation
    assert get_method("a-only").display(8) == "A-only B_rand Â_0 (r=8)"
    assert get_method("b-only-svd").display(8) == "B̂_0 A_V (r=8)"
    assert get_method("lora").display(8) == "LoRA B̂_0 Â_km (r=8)"
    assert get_method("full-ft").display(8) == "Full FT" and not get_method("full-ft").uses_rank
    assert {"full-ft", "linear-probe", "peft-lora"} <= set(METHODS)
    with pytest.raises(MethodError, match="choose one of"):
        get_method("c-only")


def test_trainable_parameter_counts(task):
    def count(name, rank=4):
        m = get_method(name).setup(toy_model(), rank=rank, seed=0, targets=TARGETS)
        return asymlora.trainable_parameters(m)

    head = 32 * 2 + 2
    per_layer = 2 * (32 + 32) * 4  # q and v, r = 4, d_in = d_out = 32
    assert count("lora") == 2 * per_layer + head
    assert count("b-only") == 2 * per_layer // 2 + head
    assert count("a-only") == count("b-only")
    assert count("b-only", rank=8) == count("lora")  # the paper's equal-budget pair
    assert count("peft-lora") == count("lora")
    assert count("linear-probe") == head
    assert count("full-ft") == sum(p.numel() for p in toy_model().parameters())


@pytest.mark.parametrize("name", ["lora", "b-only", "a-only-svd", "full-ft", "linear-probe", "peft-lora"])
def test_save_and_load_reproduce_the_trained_model(name, tmp_path):
    method = get_method(name)
    model = method.setup(toy_model(seed=1), rank=4, seed=3, targets=TARGETS)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # stand-in for training: move every trainable parameter
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    weights = method.save(model, tmp_path / "ad")
    assert weights.is_file() and weights.stat().st_size > 0
    loaded = method.load(toy_model(seed=1), tmp_path / "ad")
    x = torch.randint(5, 40, (4, 9))
    model.eval()
    loaded.eval()
    torch.testing.assert_close(loaded(input_ids=x).logits, model(input_ids=x).logits, rtol=0, atol=1e-6)


def test_b_only_file_stores_b_alone_and_is_about_half_of_lora(tmp_path):
    sizes = {}
    for name in ("lora", "b-only"):
        m = get_method(name).setup(toy_model(), rank=8, seed=0, targets=TARGETS, head=())
        sizes[name] = get_method(name).save(m, tmp_path / name).stat().st_size
    assert sizes["b-only"] < 0.6 * sizes["lora"]


def test_peft_lora_and_our_lora_train_identically_from_the_same_factors():
    """The cross-check at its sharpest: same base, same A/B start, same batches → same training."""
    task = toy_task(n_train=96, n_val=32, n_test=32)
    tok = toy_tokenizer()
    tr, va = encode_split(task, "train", tok), encode_split(task, "validation", tok)
    ours = get_method("lora").setup(toy_model(seed=2), rank=4, seed=0, targets=TARGETS)
    peft = get_method("peft-lora").setup(toy_model(seed=2), rank=4, seed=0, targets=TARGETS)
    with torch.no_grad():
        for name, layer in asymlora.adapted_layers(ours):
            p_layer = peft.get_submodule("base_model.model." + name)
            p_layer.lora_A["default"].weight.copy_(layer.lora_A)
            p_layer.lora_B["default"].weight.copy_(layer.lora_B)
        peft.base_model.model.classifier.modules_to_save["default"].load_state_dict(ours.classifier.state_dict())
    cfg = TrainConfig(lr=1e-2, epochs=2, batch_size=16, progress=False, seed=5)
    kw = dict(metrics_fn=task.metrics, primary_metric="accuracy", collate_fn=tr.collate)
    a = train(ours, tr, va, cfg, **kw)
    b = train(peft, tr, va, cfg, **kw)
    assert [h["train_loss"] for h in a.history] == pytest.approx([h["train_loss"] for h in b.history], rel=1e-4)
    for name, layer in asymlora.adapted_layers(ours):
        p_layer = peft.get_submodule("base_model.model." + name)
        torch.testing.assert_close(p_layer.lora_B["default"].weight, layer.lora_B, rtol=1e-3, atol=1e-5)


# --- one run ------------------------------------------------------------------------------------------
def test_run_writes_the_run_folder_and_the_reloaded_adapter_gives_the_reported_test_metric(task, loader, tmp_path):
    s = spec(extra_tests=True)
    result = run(s, tmp_path, loader=loader, progress=False, echo=None)
    rd = tmp_path / s.relpath()
    assert rd == tmp_path / "toy" / "toy" / "b-only-r4" / "seed0"
    for f in ("config.json", "env.json", "metrics.jsonl", "result.json", "adapter/adapter.safetensors",
              "adapter/adapter_config.json", "trials/lr-0.01/trial.json", "trials/lr-0.01/metrics.jsonl"):
        assert (rd / f).is_file(), f
    assert not (rd / "trials" / "lr-0.01" / "checkpoint").exists()  # removed once the trial finished
    env = json.loads((rd / "env.json").read_text())
    assert env["seed"] == 0 and {"torch", "transformers", "peft", "asymlora"} <= set(env["versions"])
    assert json.loads((rd / "config.json").read_text())["spec"] == s.resolved(task).to_dict()
    assert s.resolved(task).max_length == 64  # the text task's default
    assert len((rd / "metrics.jsonl").read_text().splitlines()) == 2
    for key in ("test", "val", "lr", "trainable_params", "adapter_bytes", "train_seconds", "test_extra"):
        assert key in result
    assert result["adapter_bytes"] == (rd / "adapter" / "adapter.safetensors").stat().st_size
    assert set(result["test_extra"]) == {"shifted"}
    # the frozen A is not in the file: only B and the head
    meta = asymlora.checkpoint.read_meta(rd / "adapter")
    assert all(not layer["A"]["stored"] and layer["B"]["stored"] for layer in meta["layers"].values())
    # the saved adapter, loaded onto a fresh base, gives exactly the reported test metrics
    loaded = loader.model(s, task)
    model = asymlora.load_adapter(loaded.model, rd / "adapter")
    te = encode_split(task, "test", loaded.preprocessor, max_length=64)
    assert evaluate(model, te, metrics_fn=task.metrics, collate_fn=te.collate, progress=False) == result["test"]
    # a second call returns the finished result without training
    again = Loader(tasks={"toy": task}, build=lambda *a: pytest.fail("trained again"))
    assert run(s, tmp_path, loader=again, progress=False, echo=None) == result


def test_run_refuses_a_folder_made_with_other_settings(task, loader, tmp_path):
    run(spec(), tmp_path, loader=loader, progress=False, echo=None)
    with pytest.raises(RunConflict, match="epochs=2 → 3"):
        run(spec(epochs=3), tmp_path, loader=loader, progress=False, echo=None)


def test_killed_run_resumes_to_the_same_result(task, loader, tmp_path):
    s = spec(method="lora", epochs=3, checkpoint_every=4)
    ref = run(s, tmp_path / "ref", loader=loader, progress=False, echo=None)

    class Killed(Exception):
        pass

    def kill(event, info):
        if event == "step" and info["step"] == 18:
            raise Killed

    with pytest.raises(Killed):
        run(s, tmp_path / "run", loader=loader, progress=False, echo=None, callbacks=[kill])
    assert not (tmp_path / "run" / s.relpath() / "result.json").exists()
    again = run(s, tmp_path / "run", loader=loader, progress=False, echo=None)
    assert again["test"] == ref["test"] and again["val"] == ref["val"]
    a = (tmp_path / "ref" / s.relpath() / "adapter" / "adapter.safetensors").read_bytes()
    b = (tmp_path / "run" / s.relpath() / "adapter" / "adapter.safetensors").read_bytes()
    assert a == b
    trial = json.loads((tmp_path / "run" / s.relpath() / "trials" / "lr-0.01" / "trial.json").read_text())
    assert trial["resumed_from_step"] == 16


def test_run_spec_validation():
    assert RunSpec(method="full-ft", rank=8).rank is None
    with pytest.raises(MethodError, match="did you mean 'b-only'"):
        RunSpec(method="b_only")  # no silent respelling
    with pytest.raises(ValueError, match="rank"):
        RunSpec(method="lora", rank=0)
    with pytest.raises(ValueError, match="learning rates"):
        RunSpec(lrs=(-1.0,))
    with pytest.raises(MethodError):
        RunSpec(method="nope")
    assert RunSpec(method="lora", sweep=True).resolved_lrs() == tuple(sorted(get_method("lora").lr_sweep))
    assert RunSpec(method="full-ft").resolved_lrs() == (get_method("full-ft").lr,)
    s = RunSpec(task="x.csv", task_options=(("text_column", "t"),))
    assert RunSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_adapter_dropout_settings_name_the_run_and_reach_the_adapter(task, loader, tmp_path):
    assert spec().run_name() == "b-only-r4"
    assert spec(dropout=0.1).run_name() == "b-only-r4-drop0.1"
    assert spec(dropout=0.1, dropout_on="projection").run_name() == "b-only-r4-drop0.1-projection"
    assert spec(dropout_on="projection").run_name() == "b-only-r4"  # no dropout, nothing to place
    with pytest.raises(ValueError, match="no adapter dropout"):
        RunSpec(method="full-ft", dropout=0.1)
    with pytest.raises(ValueError, match="only on input"):
        RunSpec(method="peft-lora", dropout=0.1, dropout_on="projection")
    with pytest.raises(ValueError, match=r"probability in \[0, 1\)"):
        RunSpec(dropout=1.0)
    with pytest.raises(ValueError, match="dropout_on must be one of input, projection"):
        RunSpec(dropout=0.1, dropout_on="ax")
    s = spec(dropout=0.25, dropout_on="projection", epochs=1)
    run(s, tmp_path, loader=loader, progress=False, echo=None)
    cfg = json.loads((tmp_path / s.relpath() / "adapter" / "adapter_config.json").read_text())
    assert (cfg["config"]["dropout"], cfg["config"]["dropout_on"]) == (0.25, "projection")
    # a folder written before the setting existed (no dropout keys) matches a spec without dropout
    saved = {k: v for k, v in spec().resolved(task).to_dict().items() if k not in ("dropout", "dropout_on")}
    assert settings_conflict(saved, spec().resolved(task)) is None
    assert "dropout=0.0 → 0.25" in settings_conflict(saved, s.resolved(task))


def test_peft_lora_gets_the_dropout_as_lora_dropout(task, loader):
    loaded = loader.model(spec(method="peft-lora"), task)
    model = get_method("peft-lora").setup(loaded.model, rank=4, seed=0, targets=TARGETS, head=loaded.head_modules,
                                          dropout=0.2)
    assert model.peft_config["default"].lora_dropout == 0.2


# --- the sweep ----------------------------------------------------------------------------------------
def test_pick_lr_best_on_validation_ties_and_nan():
    t = lambda lr, v: {"lr": lr, "val_primary": v}  # noqa: E731
    assert pick_lr([t(1e-3, 0.8), t(1e-2, 0.9), t(1e-1, 0.85)])["lr"] == 1e-2
    assert pick_lr([t(1e-2, 0.9), t(1e-3, 0.9)])["lr"] == 1e-3  # tie: the smaller lr
    assert pick_lr([t(1e-3, math.nan), t(1e-2, 0.1)])["lr"] == 1e-2
    assert pick_lr([t(1e-3, 0.5), t(1e-2, 0.2)], higher=False)["lr"] == 1e-2  # e.g. MSE


def test_sweep_chooses_the_validation_best_and_touches_test_once(task, loader, tmp_path, monkeypatch):
    seen = []
    real_eval = type(task).evaluate

    def spy_eval(model, data, ctx):
        seen.append(id(data))
        return real_eval(task, model, data, ctx)

    monkeypatch.setattr(task, "evaluate", spy_eval)
    after = []
    real_split = run_module.evaluate_split

    def spy_split(task_, model, data, ctx, desc):
        after.append((id(data), desc.rsplit(" ", 1)[-1]))
        return real_split(task_, model, data, ctx, desc)

    monkeypatch.setattr(run_module, "evaluate_split", spy_split)
    s = spec(method="lora", lrs=(1e-6, 1e-2, 3e-2), epochs=2)
    result = run(s, tmp_path, loader=loader, progress=False, echo=None)
    by_lr = {float(k): v for k, v in result["val_by_lr"].items()}
    assert result["lr"] == max(by_lr, key=lambda k: (by_lr[k], -k))
    assert result["lr"] != 1e-6 and by_lr[1e-6] < by_lr[result["lr"]]
    data = loader.data(s.resolved(task), task, loader.model(s, task).preprocessor)
    # after the sweep: the test split once, and the trained examples once (the train − test gap)
    assert after == [(id(data.test), "test"), (id(data.train_eval), "train")]
    assert seen.count(id(data.test)) == 1 and seen[-2:] == [id(data.test), id(data.train_eval)]
    assert seen.count(id(data.validation)) == 3 * 2  # every lr, every epoch
    assert len(list((tmp_path / s.relpath() / "trials").iterdir())) == 3
    assert set(result["train"]) == set(result["test"]) and result["gap"]["test"] == pytest.approx(
        result["train"]["accuracy"] - result["test"]["accuracy"])


# --- grids --------------------------------------------------------------------------------------------
def test_grid_from_flags_and_presets():
    g = Grid.build(tasks=["toy"], methods=["lora", "b-only:16", "full-ft"], ranks=[4, 8], seeds=[0, 1])
    assert g.methods == (("lora", 4), ("lora", 8), ("b-only", 16), ("full-ft", None))
    assert len(g.specs()) == 4 * 2
    t1 = Grid.build(tasks=["toy"], preset="table1", seeds=[0])
    assert ("b-only", 16) in t1.methods and ("peft-lora", 8) in t1.methods and ("linear-probe", None) in t1.methods
    with pytest.raises(GridError, match="takes no rank"):
        Grid.build(methods=["full-ft:8"])
    with pytest.raises(GridError, match="unknown grid settings"):
        Grid.build(methods=["lora"], epoch=3)
    with pytest.raises(GridError, match="unknown preset"):
        Grid.build(preset="table99")


def test_grid_files_json_and_toml(tmp_path):
    (tmp_path / "g.toml").write_text('tasks = ["toy"]\nmethods = ["b-only:4", "lora:4"]\nseeds = [0, 1, 2]\n'
                                     'epochs = 4\nlrs = [0.01]\n')
    (tmp_path / "g.json").write_text(json.dumps({"tasks": ["toy"], "methods": ["b-only:4", "lora:4"],
                                                 "seeds": [0, 1, 2], "epochs": 4, "lrs": [0.01]}))
    a, b = Grid.from_file(tmp_path / "g.toml"), Grid.from_file(tmp_path / "g.json")
    assert a.specs() == b.specs() and len(a.specs()) == 6 and a.specs()[0].epochs == 4
    assert Grid.from_file(tmp_path / "g.toml", seeds=[5]).seeds == (5,)  # flags override the file
    (tmp_path / "bad.toml").write_text("tasks = [")
    with pytest.raises(GridError, match="bad TOML"):
        Grid.from_file(tmp_path / "bad.toml")
    (tmp_path / "bad.json").write_text('{"tasks": ["toy"], "methods": ["lora:4"], "epochz": 3}')
    with pytest.raises(GridError, match="epochz"):
        Grid.from_file(tmp_path / "bad.json")


def test_grid_skips_finished_runs(task, loader, tmp_path):
    g = Grid.build(tasks=["toy"], methods=["b-only:4", "linear-probe"], seeds=[0, 1], epochs=1, batch_size=16,
                   lrs=[1e-2], targets=list(TARGETS), extra_tests=False, model="toy")
    calls = []

    def runner(s, out, **kw):
        calls.append(s)
        return run(s, out, **kw)

    first = run_grid(g, tmp_path, loader=loader, progress=False, echo=lambda m: None, runner=runner)
    assert len(first.done) == 4 and not first.skipped and len(calls) == 4
    second = run_grid(g, tmp_path, loader=loader, progress=False, echo=lambda m: None, runner=runner)
    assert len(second.skipped) == 4 and not second.done and len(calls) == 4
    assert json.loads((tmp_path / "grid.json").read_text())["seeds"] == [0, 1]


def test_grid_tunes_on_the_first_seed_and_later_seeds_reuse_its_choice(task, loader, tmp_path):
    g = Grid.build(tasks=["toy"], methods=["b-only:4"], seeds=[0, 1, 2], epochs=1, batch_size=16,
                   lrs=[1e-3, 3e-2], targets=list(TARGETS), extra_tests=False, model="toy", tune_on_first_seed=True)
    spec0, spec1, spec2 = g.specs()
    assert g.resolve(spec0, tmp_path, loader) == spec0.resolved(task)
    assert g.resolve(spec1, tmp_path, loader) is None  # seed 0 has not chosen yet
    calls = []

    def runner(s, out, **kw):
        calls.append(s)
        return run(s, out, **kw)

    outcome = run_grid(g, tmp_path, loader=loader, progress=False, echo=lambda m: None, runner=runner)
    assert len(outcome.done) == 3 and len(calls) == 3
    chosen = json.loads((tmp_path / spec0.relpath() / "result.json").read_text())
    assert sorted(chosen["lr_candidates"]) == [1e-3, 3e-2]
    for later in calls[1:]:
        assert later.seed in (1, 2) and later.resolved_lrs() == (chosen["lr"],)
        result = json.loads((tmp_path / later.relpath() / "result.json").read_text())
        assert result["lr_candidates"] == [chosen["lr"]]
    again = run_grid(g, tmp_path, loader=loader, progress=False, echo=lambda m: None, runner=runner)
    assert len(again.skipped) == 3 and len(calls) == 3  # the resolved specs match the finished folders
    assert json.loads((tmp_path / "grid.json").read_text())["tune_on_first_seed"] is True
    with pytest.raises(GridError, match="tune_on_first_seed"):
        Grid.build(tasks=["toy"], methods=["lora:4"], tune_on_first_seed="yes")


def test_a_later_seed_whose_first_seed_is_unfinished_waits_and_is_not_run(loader, tmp_path):
    g = Grid.build(tasks=["toy"], methods=["b-only:4"], seeds=[0, 1], epochs=1, lrs=[1e-3, 1e-2], model="toy",
                   tune_on_first_seed=True)
    ran = []

    def boom(s, out, **kw):  # the first seed fails, so the second never learns its lr
        ran.append(s.seed)
        raise RuntimeError("no")

    out = run_grid(g, tmp_path, runner=boom, echo=lambda m: None, keep_going=True, loader=loader)
    assert ran == [0] and len(out.failed) == 1 and out.busy == [g.specs()[1].relpath()]


def test_grid_keep_going_records_failures(loader, tmp_path):
    g = Grid.build(tasks=["toy"], methods=["b-only:4", "lora:4"], seeds=[0], epochs=1, lrs=[1e-2], model="toy")

    def boom(*a, **k):
        raise RuntimeError("no luck")

    with pytest.raises(RuntimeError):
        run_grid(g, tmp_path, runner=boom, echo=lambda m: None, loader=loader)
    out = run_grid(g, tmp_path, runner=boom, echo=lambda m: None, keep_going=True, loader=loader)
    assert len(out.failed) == 2 and "no luck" in out.failed[0][1]


# --- the report ---------------------------------------------------------------------------------------
def fake_result(root: Path, task: str, method: str, rank, seed: int, value: float, metric="accuracy", lr=1e-3,
                params=100, extra=None, candidates=None):
    s = RunSpec(task=task, model="m", method=method, rank=rank, seed=seed)
    d = root / s.relpath()
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "val_primary": value * e / 3,
                                                         "train_loss": 1.0 / e}) + "\n" for e in (1, 2, 3)))
    r = {"task": task, "task_label": task, "model": "m", "method": method, "rank": s.rank, "seed": seed,
         "display": s.display, "primary_metric": metric, "lr": lr, "val": {metric: value}, "test": {metric: value},
         "test_extra": extra or {}, "trainable_params": params, "total_params": 10_000, "adapter_bytes": 4 * params,
         "train_seconds": 1.5, "selected_epoch": 3, "epochs": 3, "lr_candidates": candidates or [lr]}
    (d / "result.json").write_text(json.dumps(r))


def test_report_mean_std_table_layout_csv_and_plots(tmp_path):
    values = {("lora", 8): {"sentiment": [0.80, 0.82, 0.84], "trec": [0.90, 0.91, 0.95]},
              ("b-only", 16): {"sentiment": [0.83, 0.83, 0.86], "trec": [0.92, 0.93, 0.91]},
              ("full-ft", None): {"sentiment": [0.85, 0.87, 0.80]}}
    for (method, rank), per_task in values.items():
        for task_name, vals in per_task.items():
            for seed, v in enumerate(vals):
                fake_result(tmp_path, task_name, method, rank, seed, v, lr=[1e-3, 1e-3, 3e-3][seed],
                            candidates=[1e-3, 3e-3],
                            extra={"tweets": {"accuracy": v - 0.1}} if task_name == "sentiment" else None)
    paths = write_report(tmp_path, tmp_path / "rep")
    rows = {(r["method"], r["rank"]): r for r in csv.DictReader(paths["csv"].open())}
    for (method, rank), per_task in values.items():
        row = rows[(method, str(rank) if rank else "")]
        for task_name, vals in per_task.items():
            assert float(row[f"{task_name}_mean"]) == pytest.approx(statistics.mean(vals), abs=1e-6)
            assert float(row[f"{task_name}_std"]) == pytest.approx(statistics.stdev(vals), abs=1e-6)
            assert row[f"{task_name}_n"] == "3"
    assert float(rows[("lora", "8")]["avg"]) == pytest.approx((statistics.mean([0.80, 0.82, 0.84]) +
                                                              statistics.mean([0.90, 0.91, 0.95])) / 2, abs=1e-6)
    assert rows[("full-ft", "")]["avg"] == ""  # a row without every task has no average
    md = paths["markdown"].read_text()
    lines = [x for x in md.splitlines() if x.startswith("| ")]
    assert lines[0].split("|")[1:5] == [" Method ", " # Trainable ", " sentiment ", " trec "]
    order = [x.split("|")[1].strip() for x in lines[1:4]]
    assert order == ["Full FT", "LoRA B̂_0 Â_km (r=8)", "B-only B̂_0 A_rand (r=16)"]  # the paper's row order
    assert f"{100 * statistics.mean([0.80, 0.82, 0.84]):.1f} ± {100 * statistics.stdev([0.80, 0.82, 0.84]):.1f}" in md
    assert "0.001 ×2, 0.003" in md  # chosen learning rates per cell
    assert "sentiment → tweets" in md
    for key in ("bars", "curves"):
        assert paths[key].stat().st_size > 1000 and paths[key].read_bytes()[:4] == b"\x89PNG"
    assert len(list(csv.DictReader(paths["runs_csv"].open()))) == 3 * 2 + 3 * 2 + 3


def test_report_marks_cells_with_fewer_than_three_seeds_and_errors(tmp_path):
    fake_result(tmp_path, "trec", "lora", 8, 0, 0.9)
    fake_result(tmp_path, "trec", "lora", 8, 1, 0.8)
    (table,) = build_tables(collect(tmp_path))
    assert table.cell(("lora", 8), "trec").n == 2
    assert "85.0 ± 7.1*" in write_report(tmp_path, plots=False)["markdown"].read_text()
    from asymlora.experiments import ReportError

    with pytest.raises(ReportError, match="not a folder of results"):
        collect(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no finished runs"):
        write_report(tmp_path / "empty")


def test_report_accepts_a_sweep_on_the_first_seed_reused_by_the_others(tmp_path):
    fake_result(tmp_path, "trec", "b-only", 8, 0, 0.9, lr=3e-3, candidates=[1e-3, 3e-3])
    for seed in (1, 2):
        fake_result(tmp_path, "trec", "b-only", 8, seed, 0.8, lr=3e-3)
    (table,) = build_tables(collect(tmp_path))
    assert table.cell(("b-only", 8), "trec").tuned_on_seed == 0
    md = write_report(tmp_path, plots=False)["markdown"].read_text()
    assert "0.003 † [0.001, 0.003]" in md and "--tune-on-first-seed" in md
    # a later seed that trained at a rate the first seed did not choose is another configuration
    fake_result(tmp_path / "other", "trec", "b-only", 8, 0, 0.9, lr=3e-3, candidates=[1e-3, 3e-3])
    fake_result(tmp_path / "other", "trec", "b-only", 8, 1, 0.8, lr=1e-3)
    from asymlora.experiments import ReportError

    with pytest.raises(ReportError, match="lrs: 0.001 / 0.001, 0.003"):
        build_tables(collect(tmp_path / "other"))


def test_report_curves_give_every_row_its_own_style_beyond_ten_methods():
    from asymlora.experiments.report import Table, row_styles

    rows = [(m, 8) for m in list(METHODS)[:14]]
    styles = row_styles(Table("m", rows, ["t"], {}, {"t": "accuracy"}))
    assert len(set(styles.values())) == 14 and styles[rows[0]] == ("C0", "-") and styles[rows[10]] == ("C0", "--")


def test_report_shows_tiny_parameter_shares_with_significant_digits():
    from asymlora.experiments.report import share_text

    assert share_text(770 / 22_713_216) == "0.0034%"  # a linear probe's head on MiniLM, not "0.00%"
    assert share_text(0.0033) == "0.33%" and share_text(1.0) == "100.00%"


def test_report_combines_results_folders_and_refuses_a_run_given_twice(tmp_path):
    for seed in (0, 1, 2):
        fake_result(tmp_path / "table1", "trec", "lora", 8, seed, 0.9)
        fake_result(tmp_path / "table10", "trec", "lora-svd", 8, seed, 0.8 + seed / 100)
    paths = write_report([tmp_path / "table1", tmp_path / "table10"], tmp_path / "both", plots=False)
    rows = {r["method"]: r for r in csv.DictReader(paths["csv"].open())}
    assert set(rows) == {"lora", "lora-svd"} and rows["lora-svd"]["trec_n"] == "3"
    assert "6 finished runs under" in paths["markdown"].read_text()
    from asymlora.experiments import ReportError

    with pytest.raises(ReportError, match="two results for .* seed 0"):
        write_report([tmp_path / "table1", tmp_path / "table1"], tmp_path / "twice", plots=False)
    with pytest.raises(ReportError, match="nowhere is not a folder"):
        collect([tmp_path / "table1", tmp_path / "nowhere"])


def test_report_refuses_to_average_runs_with_different_settings(task, loader, tmp_path):
    for seed, epochs in ((0, 1), (1, 2)):
        run(spec(seed=seed, epochs=epochs), tmp_path, loader=loader, progress=False, echo=None)
    from asymlora.experiments import ReportError

    with pytest.raises(ReportError, match="different settings \\(epochs\\)"):
        build_tables(collect(tmp_path))


def test_report_on_real_runs(task, loader, tmp_path):
    g = Grid.build(tasks=["toy"], methods=["lora:4", "peft-lora:4"], seeds=[0, 1, 2], epochs=2, batch_size=16,
                   lrs=[1e-2], targets=list(TARGETS), extra_tests=False, model="toy")
    run_grid(g, tmp_path, loader=loader, progress=False, echo=lambda m: None)
    (table,) = build_tables(collect(tmp_path))
    ours, peft = table.cell(("lora", 4), "toy"), table.cell(("peft-lora", 4), "toy")
    assert ours.n == peft.n == 3
    # PEFT's LoRA is a cross-check row: it must agree with ours within noise
    noise = max(ours.std, peft.std, 0.02)
    assert abs(ours.mean - peft.mean) <= 3 * noise
    assert ours.params == peft.params


def test_a_run_locked_by_a_live_process_is_not_trained_twice(task, loader, tmp_path):
    import os
    import socket

    from asymlora.experiments.grid import status
    from asymlora.train.rundir import LOCK, RunBusy

    s = spec()
    rd = tmp_path / s.relpath()
    rd.mkdir(parents=True)
    (rd / LOCK).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))  # a live process
    assert status(s, tmp_path) == "busy"
    with pytest.raises(RunBusy, match="being run by process"):
        run(s, tmp_path, loader=loader, progress=False, echo=None)
    g = Grid.build(tasks=["toy"], methods=["b-only:4"], seeds=[0], epochs=2, batch_size=16, lrs=[1e-2],
                   targets=list(TARGETS), extra_tests=False, model="toy")
    out = run_grid(g, tmp_path, loader=loader, progress=False, echo=lambda m: None)
    assert out.busy == [str(s.relpath())] and not out.done
    (rd / LOCK).write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": socket.gethostname()}))  # a dead one
    assert status(s, tmp_path) == "partial"
    run(s, tmp_path, loader=loader, progress=False, echo=None)
    assert (rd / "result.json").is_file() and not (rd / LOCK).exists()


def test_dropout_flags_reach_the_run_settings_of_run_and_grid():
    from asymlora.cli import build_parser
    from asymlora.cli.options import spec_settings

    for command in ("run", "grid"):
        args = build_parser().parse_args([command, "--dropout", "0.1", "--dropout-on", "projection"])
        assert {k: spec_settings(args)[k] for k in ("dropout", "dropout_on")} == {"dropout": 0.1, "dropout_on": "projection"}
        assert "dropout" not in spec_settings(build_parser().parse_args([command]))
