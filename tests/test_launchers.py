"""``asymlora run`` under the real launchers on CPU, 2 processes over gloo, with the commands of docs/DISTRIBUTED.md:
``torchrun -m asymlora run`` as two "nodes" of one process each (``--nnodes 2 --node_rank R --master_addr``), and
``accelerate launch --multi_gpu --num_processes 2 -m asymlora run`` (which runs torchrun) on one machine and as two
machines (``--num_machines 2 --machine_rank R --main_process_ip``), train one DDP run (8 steps per epoch of 2 × 16
examples, not 16 of 16) and end with the same adapter file, byte for byte — the accelerate run also when it is
killed after step 6 (both processes, exit 137) and launched again. ``accelerate launch --num_processes 2`` without
``--multi_gpu`` starts one process, which says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")
pytest.importorskip("transformers")

from toy import write_toy_csv, write_toy_model  # noqa: E402

from asymlora.train.launch import SingleProcessLaunchWarning, check_launch  # noqa: E402

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
REL = Path("toy") / "model" / "b-only-r4" / "seed0"
TIMING = ("elapsed_s", "train_step_s", "train_examples", "train_tokens")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE), os.environ.get("PYTHONPATH", "")]),
       "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
            "--master_addr", "127.0.0.1", "--master_port", "29531"]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", "29532"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return write_toy_model(root / "model"), write_toy_csv(root / "toy.csv", n=320)


def run_args(toy, out):
    model, data = toy
    return ["run", "--task", str(data), "--model", str(model), "--method", "b-only", "--rank", "4", "--epochs", "2",
            "--batch-size", "16", "--lr", "1e-2", "--checkpoint-every", "3", "--out", str(out), "--quiet"]


def launch(cmd):
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)


def launch_nodes(commands):
    """Start one launcher per "node" at once (as on two machines) and wait for all of them."""
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in commands]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=300), *p.communicate()) for p in procs]


@pytest.fixture(scope="module")
def torchrun_ref(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("torchrun")
    nodes = launch_nodes([TORCHRUN + ["--node_rank", str(r), "-m", "asymlora", *run_args(toy, out)] for r in (0, 1)])
    for node in nodes:
        assert node.returncode == 0, node.stderr[-3000:]
    assert [n.stdout.count("adapter file") for n in nodes] == [1, 0]  # the main process prints the result, once
    return out


def curve(root):
    """Per-epoch records without the clock (train loss summed over both processes' shards, validation)."""
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING}
            for x in (root / REL / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_accelerate_launch_killed_and_resumed_gives_the_torchrun_adapter(toy, torchrun_ref, tmp_path):
    result = json.loads((torchrun_ref / REL / "result.json").read_text())
    assert result["steps"] == 16 and result["sizes"]["train"] == 256  # 2 epochs × 256 / (2 processes × 16)

    accel = ACCELERATE + ["--multi_gpu", "--num_machines", "1", "--num_processes", "2"]
    killed = launch(accel + [str(HERE / "killing.py"), "6", *run_args(toy, tmp_path / "accelerate")])
    assert killed.returncode != 0
    ckpt = tmp_path / "accelerate" / REL / "trials" / "lr-0.01" / "checkpoint"
    assert sorted(p.name for p in ckpt.glob("*.pt")) == ["rng-6-0.pt", "rng-6-1.pt", "state-6.pt"]
    again = launch(accel + ["-m", "asymlora", *run_args(toy, tmp_path / "accelerate")])
    assert again.returncode == 0, again.stderr[-3000:]
    trial = json.loads((tmp_path / "accelerate" / REL / "trials" / "lr-0.01" / "trial.json").read_text())
    assert trial["resumed_from_step"] == 6 and trial["steps"] == 16
    assert ((tmp_path / "accelerate" / REL / "adapter" / "adapter.safetensors").read_bytes()
            == (torchrun_ref / REL / "adapter" / "adapter.safetensors").read_bytes())
    assert curve(tmp_path / "accelerate") == curve(torchrun_ref)
    got = json.loads((tmp_path / "accelerate" / REL / "result.json").read_text())
    assert got["test"] == result["test"] and got["val"] == result["val"]


@pytest.mark.slow
def test_accelerate_launch_on_two_machines_gives_the_torchrun_adapter(toy, torchrun_ref, tmp_path):
    machines = ACCELERATE + ["--multi_gpu", "--num_machines", "2", "--num_processes", "2",  # processes in all
                             "--main_process_ip", "127.0.0.1"]
    nodes = launch_nodes([machines + ["--machine_rank", str(r), "-m", "asymlora", *run_args(toy, tmp_path)]
                          for r in (0, 1)])
    for node in nodes:
        assert node.returncode == 0, node.stderr[-3000:]
    assert ((tmp_path / REL / "adapter" / "adapter.safetensors").read_bytes()
            == (torchrun_ref / REL / "adapter" / "adapter.safetensors").read_bytes())
    assert curve(tmp_path) == curve(torchrun_ref)


def test_accelerate_simple_launcher_starts_one_process_and_says_so(tmp_path):
    script = tmp_path / "who.py"
    script.write_text("import warnings, torch.distributed as dist\n"
                      "warnings.simplefilter('always')\n"
                      "from asymlora.train.launch import make_accelerator\n"
                      "acc = make_accelerator()\n"
                      "print('processes', acc.num_processes, acc.process_index)\n")
    out = launch(ACCELERATE + ["--num_machines", "1", "--num_processes", "2", str(script)])
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("processes 1 0") == 1  # one process, not two
    assert "started ONE process" in out.stderr and "--multi_gpu" in out.stderr


def test_check_launch_reads_the_launcher_environment():
    simple = {"ACCELERATE_DYNAMO_BACKEND": "NO", "ACCELERATE_MIXED_PRECISION": "no", "MASTER_ADDR": "127.0.0.1",
              "MASTER_PORT": "29500"}
    with pytest.warns(SingleProcessLaunchWarning, match="--multi_gpu"):
        assert check_launch(simple)
    assert check_launch({**simple, "WORLD_SIZE": "2"}) is None  # torchrun (accelerate launch --multi_gpu)
    assert check_launch({**simple, "OMPI_COMM_WORLD_SIZE": "2"}) is None  # mpirun (accelerate's multi-CPU)
    assert check_launch({k: v for k, v in simple.items() if k != "MASTER_ADDR"}) is None  # --num_processes 1
    assert check_launch({"MASTER_ADDR": "10.0.0.1"}) is None  # a plain python process
