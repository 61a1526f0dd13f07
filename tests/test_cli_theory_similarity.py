"""`asymlora theory` and `asymlora similarity` on small cases: exit codes, tables, files, numbers."""

from __future__ import annotations

import json

import pytest
import torch

from asymlora.cli import build_parser, main


def test_help_texts(capsys):
    for cmd in ("theory", "similarity"):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([cmd, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "Zhu et al." in out and "--out" in out


def test_theory_quick(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path / "th"
    rc = main(["theory", "--quick", "--out", str(out), "--seed", "1"])
    text = capsys.readouterr().out
    assert rc == 0
    for heading in ("Lemmas B.1 / B.2", "Theorem B.3", "Extreme example", "logistic regression", "Lemma B.5"):
        assert heading in text
    record = json.loads((out / "theory.json").read_text())
    assert record["args"]["seed"] == 1 and record["environment"]["versions"]["torch"] == torch.__version__
    for png in ("theorem_probability.png", "theorem_gap.png", "nonlinear.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # the numbers in the record are the real ones
    gd = record["lemmas"]["gradient_descent"]
    assert abs(gd["b-only"]["train_rel_gap"]) < 1e-9 and abs(gd["a-only"]["train_rel_gap"]) < 1e-9
    low = [c for c in record["theorem"] if c["sigma"] == "lowrank"]
    assert low and all(c["prob_b_wins"] == 1.0 for c in low)
    assert all(abs(c["gap_mean"] - c["paper_gap"]) < 5 * c["gap_se"] + 1e-12 for c in low)
    assert record["bounds"]["b_only_equal_rank"] == 16.0
    assert [e["rebuild_rel_error"] < 1e-10 for e in record["extreme"]] == [True, True, False]


def test_theory_sections_and_bad_input(tmp_path, capsys):
    rc = main(["theory", "--sections", "bounds,extreme", "--out", str(tmp_path), "--bound-layers", "768x2304*12",
               "--bound-rank", "4"])
    text = capsys.readouterr().out
    assert rc == 0 and "Theorem B.3" not in text and "B-only meets LoRA r=4's bound at rank 5.33333" in text
    record = json.loads((tmp_path / "theory.json").read_text())
    assert set(record) >= {"bounds", "extreme"} and "theorem" not in record
    assert main(["theory", "--sections", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown section" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="bad --bound-layers"):
        main(["theory", "--sections", "bounds", "--out", str(tmp_path), "--bound-layers", "12by3"])


def _save_adapters(root):
    import asymlora

    dirs = []
    for i, preset in enumerate(("b-only", "b-only", "a-only")):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(10, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4))
        asymlora.inject(model, asymlora.AdapterConfig.preset(preset, rank=2, targets=["0", "2"], seed=i))
        gen = torch.Generator().manual_seed(0)
        x, y = torch.randn(32, 10, generator=gen), torch.randint(0, 4, (32,), generator=gen)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.3)
        for _ in range(10):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        run = root / f"seed{i}"
        asymlora.save_adapter(model, run / "adapter")  # a run folder with the adapter inside
        dirs.append(run)
    return dirs


def test_similarity_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from asymlora.similarity import compare_checkpoints

    dirs = _save_adapters(tmp_path / "runs")
    out = tmp_path / "sim"
    rc = main(["similarity", *map(str, dirs), "--out", str(out), "--labels", "s0,s1,s2"])
    text = capsys.readouterr().out
    assert rc == 0
    lines = text.splitlines()
    assert lines[0].split()[0] == "layer" and lines[1].split()[0] == "0" and lines[2].split()[0] == "2"
    assert "pair [0]: s0~s1" in text
    record = json.loads((out / "similarity.json").read_text())
    ref = compare_checkpoints([d / "adapter" for d in dirs], labels=["s0", "s1", "s2"])
    assert record["pairs"] == ["s0~s1", "s0~s2", "s1~s2"]
    torch.testing.assert_close(torch.tensor(record["A"], dtype=torch.float64), ref.a, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.tensor(record["B"], dtype=torch.float64), ref.b, atol=1e-12, rtol=0)
    # the printed means are the JSON's
    mean_a = float(lines[1].split()[4])  # layer "0": A[0] A[1] A[2] A-mean
    assert mean_a == pytest.approx(sum(record["A_pairs"][0]) / 3, abs=6e-4)
    assert (out / "similarity.png").read_bytes()[:4] == b"\x89PNG"


def test_similarity_command_groups_run_folders_into_figure_1_scenarios(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    dirs = _save_adapters(tmp_path / "runs")
    specs = [("trec", "b-only", 0), ("sst", "b-only", 0), ("trec", "b-only", 2)]
    for d, (task, method, seed) in zip(dirs, specs):  # the config.json a training run writes
        (d / "config.json").write_text(json.dumps({"spec": {"task": task, "model": "m", "method": method,
                                                            "rank": 2, "seed": seed}}))
    out = tmp_path / "sim"
    assert main(["similarity", *map(str, dirs), "--out", str(out), "--labels", "t0,s0,t2"]) == 0
    text = capsys.readouterr().out
    assert "(a) same task, different init        1" in text and "(b) same init, different task        1" in text
    record = json.loads((out / "similarity.json").read_text())
    assert record["scenarios"]["same task, different init"]["pairs"] == ["t0~t2"]
    assert record["scenarios"]["same init, different task"]["pairs"] == ["t0~s0"]
    assert record["scenarios"]["different init and task"]["pairs"] == ["s0~t2"]
    assert (out / "scenarios.png").read_bytes()[:4] == b"\x89PNG"
    (dirs[2] / "config.json").unlink()  # not every folder is a run folder: no scenarios
    assert main(["similarity", *map(str, dirs), "--out", str(tmp_path / "sim2")]) == 0
    assert "scenarios" not in capsys.readouterr().out.split("pair [")[0]
    assert json.loads((tmp_path / "sim2" / "similarity.json").read_text())["scenarios"] == {}


def test_similarity_command_errors(tmp_path, capsys):
    dirs = _save_adapters(tmp_path / "runs")
    assert main(["similarity", str(dirs[0]), "--out", str(tmp_path)]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["similarity", str(dirs[0]), str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["similarity", str(dirs[0]), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "neither an adapter folder" in capsys.readouterr().err
    assert main(["similarity", *map(str, dirs[:2]), "--labels", "x,x", "--out", str(tmp_path)]) == 2


def test_similarity_of_svd_frozen_adapters_needs_and_uses_the_base_model(tmp_path, capsys, monkeypatch):
    import asymlora
    import asymlora.cli.similarity as sim_cli

    def base():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(10, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4))

    dirs = []
    for seed in (0, 1):  # A = top right singular vectors of W0 in both; only B differs
        model = base()
        asymlora.inject(model, asymlora.AdapterConfig.preset("b-only-svd", rank=2, targets=["0", "2"], seed=seed))
        with torch.no_grad():
            for _, layer in asymlora.adapted_layers(model):
                layer.lora_B.normal_(generator=torch.Generator().manual_seed(seed))
        dirs.append(asymlora.save_adapter(model, tmp_path / f"svd{seed}"))
    args = ["similarity", *map(str, dirs), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "--base-model" in capsys.readouterr().err
    loaded = []
    monkeypatch.setattr(sim_cli, "_load_base", lambda name, pooling: loaded.append((name, pooling)) or base())
    assert main([*args, "--base-model", "my-base"]) == 0 and loaded == [("my-base", "model")]
    # run folders trained with the mean-pooling head name their layers after it: the base is built the same way
    for d in dirs:
        (d / "config.json").write_text(json.dumps({"spec": {"task": "t", "model": "m", "method": "b-only-svd",
                                                            "rank": 2, "seed": 0, "pooling": "mean"}}))
    assert main([*args, "--base-model", "my-base"]) == 0 and loaded[-1] == ("my-base", "mean")
    (dirs[0] / "config.json").write_text(json.dumps({"spec": {"pooling": "model"}}))
    assert main([*args, "--base-model", "my-base"]) == 2
    assert "different task heads" in capsys.readouterr().err
    record = json.loads((tmp_path / "o" / "similarity.json").read_text())
    a = torch.tensor(record["A"], dtype=torch.float64)
    assert a.numel() > 0 and torch.allclose(a[~a.isnan()], torch.ones(()).double(), atol=1e-6)


def test_theory_leaves_thread_count_alone(tmp_path):
    torch.set_num_threads(2)
    assert main(["theory", "--sections", "bounds", "--out", str(tmp_path), "--threads", "1"]) == 0
    assert torch.get_num_threads() == 2
