"""The training loop: learning, run-folder files, kill-and-resume equality, schedule, clipping, safety."""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch

pytest.importorskip("accelerate")
pytest.importorskip("transformers")

from toy import toy_model, toy_task, toy_tokenizer  # noqa: E402

import asymlora  # noqa: E402
from asymlora.tasks.protocol import Limits  # noqa: E402
from asymlora.train import (  # noqa: E402
    Checkpointer,
    ResumeError,
    RunDir,
    TrainConfig,
    evaluate,
    train,
    trainable_state,
)

# per-epoch record fields that depend on the clock or on where a resumed process started
TIMING = ("elapsed_s", "train_step_s", "train_examples", "train_tokens")


@pytest.fixture(scope="module")
def data():
    task = toy_task(n_train=160, n_val=48, n_test=48)
    tok = toy_tokenizer()
    limits = Limits(max_length=32)
    return task, task.encode("train", tok, limits), task.encode("validation", tok, limits)


def adapted(preset="lora", dropout=0.0, seed=0):
    model = toy_model(seed=seed)
    cfg = asymlora.AdapterConfig.preset(preset, rank=4, targets=("query", "value"), train_modules=("classifier",),
                                        seed=seed, dropout=dropout)
    return asymlora.inject(model, cfg)


def run_train(data, model, cfg, run_dir=None, callbacks=()):
    task, tr, va = data
    return train(model, tr, va, cfg, metrics_fn=task.metrics, primary_metric=task.primary_metric,
                 collate_fn=tr.collate, run_dir=run_dir, callbacks=callbacks, desc="t")


def test_loss_decreases_and_model_learns(data):
    model = adapted("lora")
    out = run_train(data, model, TrainConfig(lr=1e-2, epochs=6, batch_size=16, progress=False))
    losses = [h["train_loss"] for h in out.history]
    assert len(out.history) == 6
    assert losses[-1] < 0.85 * losses[0]
    assert out.val_primary > 0.7  # majority class is about 0.5 on the toy task
    assert out.steps == 6 * math.ceil(160 / 16)


def test_only_trainable_parameters_change(data):
    model = adapted("b-only")
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    a_before = {n: b.detach().clone() for n, b in model.named_buffers() if n.endswith("lora_A")}
    trained_before = trainable_state(model)
    run_train(data, model, TrainConfig(lr=1e-2, epochs=1, batch_size=16, progress=False))
    for n, p in model.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), n
    assert a_before and all(torch.equal(dict(model.named_buffers())[n], v) for n, v in a_before.items())
    changed = [n for n, v in trainable_state(model).items() if not torch.equal(v, trained_before[n])]
    assert any("lora_B" in n for n in changed) and any("classifier" in n for n in changed)


def test_run_dir_files(data, tmp_path):
    model = adapted("b-only")
    out = run_train(data, model, TrainConfig(lr=1e-2, epochs=2, batch_size=16, checkpoint_every=3, progress=False),
                    run_dir=tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for r in lines:
        assert {"train_loss", "val", "lr", "elapsed_s", "step", "val_primary"} <= set(r)
        assert "accuracy" in r["val"]
    assert lines == out.history
    pointer = json.loads((tmp_path / "checkpoint" / "latest.json").read_text())
    assert pointer["step"] == out.steps  # the last checkpoint is the one after the final epoch
    assert sorted(p.name for p in (tmp_path / "checkpoint").glob("*.pt")) == [f"rng-{out.steps}-0.pt",
                                                                           f"state-{out.steps}.pt"]
    state = torch.load(tmp_path / "checkpoint" / f"state-{out.steps}.pt", weights_only=True)
    assert state["epoch"] == 2 and state["batches_done"] == 0 and len(state["history"]) == 2
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.parametrize("kill_at,every", [(7, 5), (13, 4)])
def test_killed_run_resumes_to_identical_result(data, tmp_path, kill_at, every):
    """A run stopped mid-epoch (after a checkpoint, before the next) and resumed in a fresh model ends
    with bit-identical parameters, history and selection to an uninterrupted run; dropout is on
    (BERT's hidden dropout and the adapter's input dropout) so the random state must be restored."""
    cfg = TrainConfig(lr=1e-2, epochs=3, batch_size=16, checkpoint_every=every, progress=False, seed=3)
    ref_model = adapted("b-only", dropout=0.1)
    ref = run_train(data, ref_model, cfg, run_dir=tmp_path / "ref")

    class Killed(Exception):
        pass

    def kill(event, info):
        if event == "step" and info["step"] == kill_at:
            raise Killed

    with pytest.raises(Killed):
        run_train(data, adapted("b-only", dropout=0.1), cfg, run_dir=tmp_path / "run", callbacks=[kill])
    resumed_model = adapted("b-only", dropout=0.1)  # a new process starts from a fresh model
    out = run_train(data, resumed_model, cfg, run_dir=tmp_path / "run")
    assert out.resumed_from_step == (kill_at // every) * every
    assert out.steps == ref.steps and out.selected_epoch == ref.selected_epoch
    strip = lambda h: [{k: v for k, v in r.items() if k not in TIMING} for r in h]  # noqa: E731
    assert strip(out.history) == strip(ref.history)
    resumed_epoch = out.resumed_from_step // math.ceil(len(data[1]) / 16)  # the epoch killed and resumed
    counts = lambda h: [r["train_examples"] for r in h]  # noqa: E731
    assert counts(out.history)[resumed_epoch + 1:] == counts(ref.history)[resumed_epoch + 1:] != []
    assert counts(out.history)[resumed_epoch] < counts(ref.history)[resumed_epoch]  # only the steps after resuming
    a, b = trainable_state(ref_model), trainable_state(resumed_model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and the saved adapters are byte-identical in their tensors
    asymlora.save_adapter(ref_model, tmp_path / "ad_ref")
    asymlora.save_adapter(resumed_model, tmp_path / "ad_run")
    assert (tmp_path / "ad_ref" / "adapter.safetensors").read_bytes() == (tmp_path / "ad_run" / "adapter.safetensors").read_bytes()


def test_resume_of_a_finished_run_trains_nothing(data, tmp_path):
    cfg = TrainConfig(lr=1e-2, epochs=2, batch_size=16, progress=False)
    m1 = adapted("lora")
    first = run_train(data, m1, cfg, run_dir=tmp_path)
    m2 = adapted("lora")
    steps = []
    again = run_train(data, m2, cfg, run_dir=tmp_path, callbacks=[lambda e, i: steps.append(i)])
    assert steps == [] and again.resumed_from_step == first.steps
    assert all(torch.equal(v, trainable_state(m2)[k]) for k, v in trainable_state(m1).items())


def test_resume_refuses_changed_settings(data, tmp_path):
    run_train(data, adapted("lora"), TrainConfig(lr=1e-2, epochs=1, batch_size=16, progress=False), run_dir=tmp_path)
    with pytest.raises(ResumeError, match="epochs"):
        run_train(data, adapted("lora"), TrainConfig(lr=1e-2, epochs=2, batch_size=16, progress=False),
                  run_dir=tmp_path)


def test_checkpoint_is_loaded_without_unpickling(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    ck = Checkpointer(tmp_path)
    ck.save_process(1)
    ck.save_main(1, {"x": torch.zeros(1)})
    assert ck.load() is not None
    with open(tmp_path / "state-1.pt", "wb") as f:
        pickle.dump({"format": "asymlora-train-state", "evil": Evil()}, f, protocol=2)
    with pytest.raises(ResumeError, match="cannot be read safely"):
        ck.load()
    assert "pwned" not in capsys.readouterr().out


def test_checkpoint_pointer_moves_last_and_old_files_are_pruned(tmp_path):
    ck = Checkpointer(tmp_path)
    for step in (5, 10):
        ck.save_process(step, {"loss_sum": float(step)})
        ck.save_main(step, {"v": torch.tensor([step])})
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["rng-10-0.pt", "state-10.pt"]
    state, proc = ck.load()
    assert state["step"] == 10 and int(state["v"]) == 10 and "torch" in proc["rng"] and proc["loss_sum"] == 10.0
    ck.clear()
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_select_best_keeps_best_epoch_and_last_keeps_last(data):
    task, tr, va = data
    for select in ("best", "last"):
        model = adapted("lora")
        out = run_train(data, model, TrainConfig(lr=3e-2, epochs=4, batch_size=16, select=select, progress=False))
        values = [h["val_primary"] for h in out.history]
        expect = values.index(max(values)) + 1 if select == "best" else 4
        assert out.selected_epoch == expect
        again = evaluate(model, va, metrics_fn=task.metrics, collate_fn=tr.collate, progress=False)
        assert again == pytest.approx(out.history[expect - 1]["val"])


def test_linear_schedule_with_warmup_and_clipping(data, monkeypatch):
    from accelerate import Accelerator

    lrs = []
    norms = []
    real = Accelerator.clip_grad_norm_

    def spy(self, parameters, max_norm, norm_type=2):
        norms.append(max_norm)
        return real(self, parameters, max_norm, norm_type)

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", spy)
    model = adapted("lora")
    cfg = TrainConfig(lr=1e-2, epochs=2, batch_size=16, warmup_ratio=0.25, max_grad_norm=0.5, progress=False)

    def grab(event, info):
        if event == "step":
            lrs.append(info["lr"])

    out = run_train(data, model, cfg, callbacks=[grab])
    total = out.steps
    warm = math.ceil(0.25 * total)
    assert lrs[0] == pytest.approx(1e-2 / warm)  # after the first step of warm-up
    assert lrs[warm - 1] == pytest.approx(1e-2)  # warm-up done
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)  # linear decay to zero
    assert all(b <= a + 1e-12 for a, b in zip(lrs[warm - 1:], lrs[warm:]))
    assert norms and set(norms) == {0.5}


def test_train_config_validation():
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="select"):
        TrainConfig(select="median")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_dict({"lr": 1e-3, "epoch": 3})
    assert TrainConfig.from_dict(TrainConfig(lr=2e-3).to_dict()) == TrainConfig(lr=2e-3)


def test_errors_are_clear(data):
    task, tr, va = data
    model = toy_model()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        run_train(data, model, TrainConfig(progress=False))


def test_run_dir_helpers(tmp_path):
    rd = RunDir(tmp_path)
    assert not rd.is_done()
    rd.write_env(5)
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["seed"] == 5 and env["versions"]["torch"] == torch.__version__
    assert env["versions"]["asymlora"] == asymlora.__version__
    assert "machine" in env and "git" in env
    rd.write_result({"x": 1})
    assert rd.is_done() and rd.read_result() == {"x": 1}


DDP_SCRIPT = r'''
import sys, json, torch
torch.set_num_threads(1)
from accelerate import Accelerator
from killing import exit_after_step
from toy import toy_task, toy_loader
from asymlora.experiments import RunSpec, run
acc = Accelerator(cpu=True)
task = toy_task(n_train=96, n_val=25, n_test=23, extra_test=True)
spec = RunSpec(task="toy", model="toy", method="b-only", rank=4, epochs=2, batch_size=8, lrs=(1e-2,),
               targets=("query", "value"), extra_tests=True, checkpoint_every=2)
kill = [exit_after_step(int(sys.argv[2]))] if len(sys.argv) > 2 else []
res = run(spec, sys.argv[1], loader=toy_loader(task), accelerator=acc, progress=False, echo=None, callbacks=kill)
with open(f"{sys.argv[1]}-process{acc.process_index}.json", "w") as f:
    json.dump({"index": acc.process_index, "processes": acc.num_processes, "test": res["test"]}, f)
'''


@pytest.mark.slow
def test_two_processes_with_torchrun_kill_and_resume(tmp_path):
    """The same code under DDP (2 CPU processes, gloo): killed after step 4 in both processes, then
    resumed, it ends with the adapter of an uninterrupted 2-process run; odd-sized evaluation sets are
    gathered without duplicates."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    here = Path(__file__).resolve().parent
    path = os.pathsep.join([str(here.parent / "src"), str(here), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)]

    def launch(out, *extra):
        return subprocess.run(cmd + [str(out), *extra], env=env, capture_output=True, text=True, timeout=300)

    ref = launch(tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-3000:]
    reports = [json.loads((tmp_path / f"ref-process{i}.json").read_text()) for i in (0, 1)]
    assert [(r["index"], r["processes"]) for r in reports] == [(0, 2), (1, 2)]
    assert reports[0]["test"] == reports[1]["test"]  # both processes see the same gathered metrics
    killed = launch(tmp_path / "run", "4")
    assert killed.returncode != 0
    trial = tmp_path / "run" / "toy" / "toy" / "b-only-r4" / "seed0" / "trials" / "lr-0.01"
    assert sorted(p.name for p in (trial / "checkpoint").glob("*.pt")) == ["rng-4-0.pt", "rng-4-1.pt", "state-4.pt"]
    again = launch(tmp_path / "run")
    assert again.returncode == 0, again.stderr[-3000:]
    rel = Path("toy") / "toy" / "b-only-r4" / "seed0"
    a = json.loads((tmp_path / "ref" / rel / "result.json").read_text())
    b = json.loads((tmp_path / "run" / rel / "result.json").read_text())
    assert a["test"] == b["test"] and a["sizes"] == b["sizes"] == {"train": 96, "validation": 25, "test": 23,
                                                                     "train_eval": 96, "shifted": 23}
    assert ((tmp_path / "ref" / rel / "adapter" / "adapter.safetensors").read_bytes()
            == (tmp_path / "run" / rel / "adapter" / "adapter.safetensors").read_bytes())

    def curve(root):  # per-epoch train loss (summed over both processes' shards) and validation
        return [{k: v for k, v in json.loads(x).items() if k not in TIMING}
                for x in (root / rel / "metrics.jsonl").read_text().splitlines()]

    assert curve(tmp_path / "run") == curve(tmp_path / "ref")
