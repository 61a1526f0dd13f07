"""``asymlora run / grid / report / demo`` end to end on a tiny local model folder and a CSV task:
help texts, run folders, a real kill (the process exits mid-run) and resume, grid skipping, report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")
pytest.importorskip("transformers")

from toy import write_toy_csv, write_toy_model  # noqa: E402

from asymlora.cli import main  # noqa: E402

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return write_toy_model(root / "model"), write_toy_csv(root / "toy.csv", n=320)


def run_args(toy, out, *extra):
    model, data = toy
    return ["run", "--task", str(data), "--model", str(model), "--method", "b-only", "--rank", "4",
            "--epochs", "2", "--batch-size", "16", "--lr", "1e-2", "--checkpoint-every", "5", "--out", str(out),
            "--quiet", *extra]


@pytest.mark.parametrize("command,words", [
    ("run", ["--task", "--method", "--rank", "--sweep", "--lr", "--epochs", "resumes"]),
    ("grid", ["--config", "--preset", "--seeds", "--dry-run", "skip", "table1"]),
    ("report", ["RESULTS_DIR", "mean ± std", "report.md", "table1.csv"]),
    ("demo", ["LoRA r=8", "B-only r=8", "r=16", "A-only r=8", "10 minutes", "--train-examples"]),
])
def test_help_is_complete(command, words, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for w in words:
        assert w in text, w


def test_list_methods(capsys):
    assert main(["run", "--list-methods"]) == 0
    out = capsys.readouterr().out
    for name in ("lora", "b-only", "a-only", "full-ft", "linear-probe", "peft-lora", "b-only-svd", "lora-b-kaiming"):
        assert f"\n{name} " in out
    assert "B̂_0 A_rand" in out


def test_run_command_writes_a_run_folder(toy, tmp_path, capsys):
    assert main(run_args(toy, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "test" in out and "adapter file" in out and "trainable" in out
    rd = tmp_path / "toy" / "model" / "b-only-r4" / "seed0"
    result = json.loads((rd / "result.json").read_text())
    assert result["method"] == "b-only" and result["rank"] == 4 and result["lr"] == 0.01
    assert result["spec"]["task_options"] == {}
    assert (rd / "adapter" / "adapter.safetensors").is_file()


def test_run_command_errors(toy, tmp_path, capsys):
    assert main(["run", "--method", "c-only", "--out", str(tmp_path)]) == 2
    assert "choose one of" in capsys.readouterr().err
    assert main(run_args(toy, tmp_path)) == 0
    assert main(run_args(toy, tmp_path)[:-1] + ["--epochs", "3", "--quiet"]) == 2  # other settings, same folder
    assert "other settings" in capsys.readouterr().err


def test_killed_process_resumes_to_the_same_result(toy, tmp_path):
    """The run process dies (exit 137, no clean-up) after step 15; running the same command again resumes
    from the checkpoint at step 15 and ends with the adapter and metrics of an uninterrupted run."""
    assert main(run_args(toy, tmp_path / "ref")) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(HERE / "killing.py"), "15", *run_args(toy, tmp_path / "run")]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 137, first.stderr[-2000:]
    rd = tmp_path / "run" / "toy" / "model" / "b-only-r4" / "seed0"
    assert not (rd / "result.json").exists()
    assert json.loads((rd / "trials" / "lr-0.01" / "checkpoint" / "latest.json").read_text())["step"] == 15
    second = subprocess.run([sys.executable, "-m", "asymlora", *cmd[3:]], env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    ref = json.loads((tmp_path / "ref" / "toy" / "model" / "b-only-r4" / "seed0" / "result.json").read_text())
    got = json.loads((rd / "result.json").read_text())
    assert got["test"] == ref["test"] and got["val"] == ref["val"] and got["selected_epoch"] == ref["selected_epoch"]
    ref_bytes = (tmp_path / "ref" / "toy" / "model" / "b-only-r4" / "seed0" / "adapter" / "adapter.safetensors")
    assert (rd / "adapter" / "adapter.safetensors").read_bytes() == ref_bytes.read_bytes()
    assert json.loads((rd / "trials" / "lr-0.01" / "trial.json").read_text())["resumed_from_step"] == 15


def test_grid_command_skips_done_runs_and_reports(toy, tmp_path, capsys):
    model, data = toy
    cfg = tmp_path / "grid.toml"
    cfg.write_text(f'tasks = ["{data}"]\nmethods = ["lora:4", "b-only:4", "linear-probe"]\nseeds = [0, 1, 2]\n'
                   f'model = "{model}"\nepochs = 1\nbatch_size = 32\nlrs = [0.01]\n')
    out = tmp_path / "g"
    assert main(["grid", "--config", str(cfg), "--out", str(out), "--dry-run"]) == 0
    assert "9 runs: 9 todo" in capsys.readouterr().out
    assert main(["grid", "--config", str(cfg), "--seeds", "0", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "3 run, 0 already done" in text and (out / "report" / "report.md").is_file()
    assert main(["grid", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "6 run, 3 already done" in text
    assert main(["grid", "--config", str(cfg), "--out", str(out), "--dry-run"]) == 0
    assert "9 runs: 9 done" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    md = capsys.readouterr().out
    assert "| Method | # Trainable | toy | Avg. |" in md and "LoRA B̂_0 Â_km (r=4)" in md and "B-only B̂_0 A_rand (r=4)" in md
    assert (tmp_path / "rep" / "table1.csv").is_file() and (tmp_path / "rep" / "curves.png").is_file()


def test_grid_and_report_errors(tmp_path, capsys):
    assert main(["grid", "--methods", "full-ft:8", "--out", str(tmp_path)]) == 2
    assert "takes no rank" in capsys.readouterr().err
    (tmp_path / "g.json").write_text('{"tasks": ["toy"], "bogus": 1}')
    assert main(["grid", "--config", str(tmp_path / "g.json"), "--out", str(tmp_path)]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_demo_command_on_the_toy_model(toy, tmp_path, capsys):
    model, data = toy
    args = ["demo", "--task", str(data), "--model", str(model), "--epochs", "1", "--train-examples", "96",
            "--lr", "1e-2", "--out", str(tmp_path), "--quiet", "--threads", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for w in ("LoRA", "B-only", "A-only", "trainable params", "adapter bytes", "train s", "total wall time"):
        assert w in out
    table = [x for x in out.splitlines() if re.match(r"^(LoRA|B-only|A-only)\s+B", x)]
    assert len(table) == 4
    assert main(args) == 0  # a second demo re-uses the finished runs
    assert "re-used" in capsys.readouterr().out
