"""FSDP2 on CPU (2 processes, gloo, torchrun) with a tiny LlamaConfig model: a B-only run on the toy instructions
sharded with ``fully_shard`` follows DDP's loss curve step for step within float round-off, its frozen factors stay
buffers (replicated, never sharded: PEFT's FSDP1 "FlatParameter requires uniform requires_grad" cannot arise), the
adapter it saves (gathered from the shards) loads on one process with the outputs of the trained model, a killed
FSDP run resumes to the same adapter bit for bit, and ``asymlora run --fsdp`` does it from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate")
pytest.importorskip("transformers")
from toy import tiny_llama  # noqa: E402

import asymlora  # noqa: E402
from asymlora.train import TrainConfig  # noqa: E402

HERE = Path(__file__).resolve().parent
REL = Path("toy-instruct") / "tiny-llama" / "b-only-r4" / "seed0"
CFG = asymlora.AdapterConfig.preset("b-only", rank=4, targets=("q_proj", "v_proj", "down_proj"))
IDS = torch.tensor([[2, 5, 6, 8, 4, 3], [2, 7, 12, 4, 3, 13]])

SCRIPT = r'''
import json, sys, torch
torch.set_num_threads(1)
from torch.distributed.fsdp import FSDPModule
from accelerate import Accelerator
from killing import exit_after_step
from toy import toy_instruction_task, tiny_llama_build
from asymlora.experiments import Loader, RunSpec, run
from asymlora.train import sharding

out, modes, kill = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
acc = Accelerator(cpu=True)
task = toy_instruction_task()
spec = RunSpec(task="toy-instruct", model="tiny-llama", method="b-only", rank=4, epochs=3, batch_size=4, lrs=(3e-2,),
               checkpoint_every=2, eval_batch_size=8, targets=("q_proj", "v_proj", "down_proj"))
seen = {}

def watch(event, info):  # the loss of this process's shard at every step
    if event == "step":
        seen.setdefault("losses", []).append(info["loss"])

if "fsdp" in modes:  # what fully_shard makes of the injected model: sharded parameters, frozen A still buffers
    import asymlora
    from toy import tiny_llama
    m = sharding.shard_model(asymlora.inject(tiny_llama(0), asymlora.AdapterConfig.preset(
        "b-only", rank=4, targets=spec.targets)), acc.device)
    layout = {"sharded_params": sorted({type(p).__name__ for p in m.parameters()}),
              "frozen_A_buffers": sorted({type(b).__name__ for n, b in m.named_buffers() if n.endswith("lora_A")}),
              "blocks": sum(isinstance(x, FSDPModule) for x in m.modules()),
              "trained_local_numel": sum(p.to_local().numel() for p in m.parameters() if p.requires_grad),
              "trained_numel": sum(p.numel() for p in m.parameters() if p.requires_grad)}
    del m
for mode in modes:
    seen.clear()
    cbs = [watch] + ([exit_after_step(kill)] if kill else [])
    res = run(spec, f"{out}/{mode}", loader=Loader(tasks={task.name: task}, build=tiny_llama_build), accelerator=acc,
              progress=False, echo=None, callbacks=cbs, fsdp=(mode == "fsdp"))
    with open(f"{out}/{mode}-process{acc.process_index}.json", "w") as f:
        json.dump({**seen, **(layout if mode == "fsdp" else {}), "test": res["test"]}, f)
'''


def launch(tmp_path, out, modes, kill=0, port=29571):
    script = tmp_path / "fsdp_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(script), str(out), ",".join(modes), str(kill)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)


def report(root, mode, rank):
    return json.loads((root / f"{mode}-process{rank}.json").read_text())


def logits(model):
    with torch.no_grad():
        return model.eval()(input_ids=IDS).logits


@pytest.mark.slow
def test_fsdp_matches_ddp_and_its_adapter_loads_on_one_process(tmp_path):
    done = launch(tmp_path, tmp_path / "ref", ["ddp", "fsdp"])
    assert done.returncode == 0, done.stderr[-4000:]
    for rank in (0, 1):
        ddp, fsdp = report(tmp_path / "ref", "ddp", rank), report(tmp_path / "ref", "fsdp", rank)
        assert len(ddp["losses"]) == len(fsdp["losses"]) == 9  # 3 epochs × 20 examples / (2 processes × 4)
        assert max(abs(a - b) for a, b in zip(ddp["losses"], fsdp["losses"])) < 1e-5
        assert ddp["losses"][-1] < ddp["losses"][0]
        assert fsdp["sharded_params"] == ["DTensor"] and fsdp["frozen_A_buffers"] == ["Tensor"]
        assert fsdp["blocks"] == 3  # two decoder layers and the root
        assert fsdp["trained_local_numel"] * 2 == fsdp["trained_numel"]  # each process holds half of every B
        assert fsdp["test"] == pytest.approx(ddp["test"], abs=1e-5)
    trained = {n: p.shape for n, p in asymlora.inject(tiny_llama(0), CFG).named_parameters() if p.requires_grad}
    result = json.loads((tmp_path / "ref" / "fsdp" / REL / "result.json").read_text())
    assert result["trainable_params"] == sum(s.numel() for s in trained.values())  # counted on the gathered model
    from_fsdp = asymlora.load_adapter(tiny_llama(0), tmp_path / "ref" / "fsdp" / REL / "adapter")
    from_ddp = asymlora.load_adapter(tiny_llama(0), tmp_path / "ref" / "ddp" / REL / "adapter")
    assert (logits(from_fsdp) - logits(from_ddp)).abs().max() < 1e-5
    assert (logits(from_fsdp) - logits(tiny_llama(0))).abs().max() > 1e-2  # it trained


@pytest.mark.slow
def test_killed_fsdp_run_resumes_to_the_same_adapter(tmp_path):
    ref = launch(tmp_path, tmp_path / "ref", ["fsdp"], port=29572)
    assert ref.returncode == 0, ref.stderr[-4000:]
    killed = launch(tmp_path, tmp_path / "run", ["fsdp"], kill=4, port=29573)
    assert killed.returncode != 0
    ckpt = tmp_path / "run" / "fsdp" / REL / "trials" / "lr-0.03" / "checkpoint"
    assert sorted(p.name for p in ckpt.glob("*.pt")) == ["rng-4-0.pt", "rng-4-1.pt", "state-4.pt"]
    state = torch.load(ckpt / "state-4.pt", weights_only=True)
    trained = {n: p.shape for n, p in asymlora.inject(tiny_llama(0), CFG).named_parameters() if p.requires_grad}
    assert state["fsdp"] and {n: v.shape for n, v in state["model"].items()} == trained  # whole tensors, not shards
    moments = state["optimizer"]["state"]
    assert {n: v["exp_avg"].shape for n, v in moments.items()} == trained  # keyed by name, whole
    again = launch(tmp_path, tmp_path / "run", ["fsdp"], port=29574)
    assert again.returncode == 0, again.stderr[-4000:]
    assert ((tmp_path / "run" / "fsdp" / REL / "adapter" / "adapter.safetensors").read_bytes()
            == (tmp_path / "ref" / "fsdp" / REL / "adapter" / "adapter.safetensors").read_bytes())


def test_fsdp_settings_are_checked():
    with pytest.raises(ValueError, match="mixed precision under FSDP"):
        TrainConfig(fsdp=True, mixed_precision="bf16")
    assert TrainConfig.from_dict(TrainConfig(fsdp=True).to_dict()).fsdp


@pytest.fixture(scope="module")
def instruction_files(tmp_path_factory):
    """A tiny Llama folder (with the toy chat template) and the toy instructions as a user's JSONL file."""
    from toy import instruction_records, lm_tokenizer

    root = tmp_path_factory.mktemp("fsdp-cli")
    tiny_llama(0).save_pretrained(root / "llama")
    lm_tokenizer().save_pretrained(root / "llama")
    rows = [json.dumps({"instruction": r.instruction, "output": r.response}) for r in instruction_records()]
    (root / "inst.jsonl").write_text("\n".join(rows) + "\n")
    return root


def cli_args(files, out, *extra):
    return ["run", "--task", str(files / "inst.jsonl"), "--task-kind", "instructions", "--model", str(files / "llama"),
            "--method", "b-only", "--rank", "4", "--epochs", "2", "--batch-size", "4", "--lr", "3e-2",
            "--targets", "q_proj", "v_proj", "--max-test-examples", "20", "--quiet", "--out", str(out), *extra]


@pytest.mark.slow
def test_run_command_with_fsdp_matches_ddp(instruction_files, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29575",
                "-m", "asymlora"]
    folders = {}
    for name, extra in (("ddp", ()), ("fsdp", ("--fsdp",))):
        done = subprocess.run(torchrun + cli_args(instruction_files, tmp_path / name, *extra), env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
        assert done.stdout.count("adapter file") == 1
        folders[name] = next((tmp_path / name).glob("*/*/b-only-r4/seed0"))
    ddp, fsdp = (json.loads((folders[k] / "result.json").read_text()) for k in ("ddp", "fsdp"))
    assert ddp["steps"] == fsdp["steps"] > 0
    assert fsdp["val"] == pytest.approx(ddp["val"], abs=1e-5) and fsdp["test"] == pytest.approx(ddp["test"], abs=1e-5)
    a, b = (asymlora.load_adapter(tiny_llama(0), folders[k] / "adapter") for k in ("ddp", "fsdp"))
    assert (logits(a) - logits(b)).abs().max() < 1e-5


def test_run_command_refuses_fsdp_in_one_process(instruction_files, tmp_path, capsys):
    from asymlora.cli import main

    assert main(cli_args(instruction_files, tmp_path, "--fsdp")) == 1
    assert "launch with torchrun" in capsys.readouterr().err


def test_fsdp_refuses_validation_by_generation(tmp_path):
    """Generating summaries runs a different number of forward passes per process, which FSDP's all-gathers cannot
    follow (it would hang): refused before anything trains."""
    from toy import tiny_llama_build, toy_loader, toy_summary_task

    from asymlora.experiments import RunSpec, run

    task = toy_summary_task(select_on="rouge1")
    spec = RunSpec(task="toy-summaries", model="tiny-llama", method="b-only", rank=4, epochs=1, batch_size=4,
                   lrs=(3e-2,), targets=("q_proj",))
    with pytest.raises(ValueError, match="validates by generating"):
        run(spec, tmp_path, loader=toy_loader(task, tiny_llama_build), progress=False, echo=None, fsdp=True)
    assert not list((tmp_path).glob("**/checkpoint/*.pt"))
