"""``asymlora run --report-to``: off by default; with ``tensorboard`` (needs the package: ``asymlora[tracking]``) the
run writes TensorBoard event files under ``RUN/logs/lr-<lr>/`` whose ``train/loss`` has one value per optimizer step
and whose ``train/epoch_loss`` and ``val/accuracy`` are those of ``metrics.jsonl``; a tracker that is not installed
or not known is refused before training."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("accelerate")
pytest.importorskip("transformers")
from toy import write_toy_csv, write_toy_model  # noqa: E402

from asymlora.cli import main  # noqa: E402
from asymlora.train.tracking import check_trackers  # noqa: E402

REL = ("toy", "model", "b-only-r4", "seed0")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return write_toy_model(root / "model"), write_toy_csv(root / "toy.csv", n=160)


def run_args(toy, out, *extra):
    model, data = toy
    return ["run", "--task", str(data), "--model", str(model), "--method", "b-only", "--rank", "4", "--epochs", "2",
            "--batch-size", "16", "--lr", "1e-2", "--out", str(out), "--quiet", *extra]


def test_no_tracking_by_default(toy, tmp_path):
    assert main(run_args(toy, tmp_path)) == 0
    assert not (tmp_path.joinpath(*REL) / "logs").exists()


def test_unknown_or_missing_trackers_are_refused(toy, tmp_path, capsys):
    assert check_trackers(()) == () and check_trackers(["none"]) == ()
    with pytest.raises(ValueError, match="unknown tracker"):
        check_trackers(["tensorbored"])
    assert main(run_args(toy, tmp_path, "--report-to", "tensorbored")) == 2
    assert "unknown tracker" in capsys.readouterr().err
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert main(run_args(toy, tmp_path, "--report-to", "tensorboard")) == 2
        assert "asymlora[tracking]" in capsys.readouterr().err
        assert not tmp_path.joinpath(*REL).exists()


def test_report_to_tensorboard_writes_the_training_loss(toy, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(run_args(toy, tmp_path, "--report-to", "tensorboard")) == 0
    rd = tmp_path.joinpath(*REL)
    logs = rd / "logs" / "lr-0.01"
    assert list(logs.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(logs))
    events.Reload()
    result = json.loads((rd / "result.json").read_text())
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == list(range(1, result["steps"] + 1))  # 2 epochs × 128 / 16 = 16 steps
    assert all(0 < e.value < 10 for e in events.Scalars("train/loss"))
    assert events.Scalars("train/lr")[-1].value == pytest.approx(0.0, abs=1e-12)  # linear decay to zero
    history = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in events.Scalars("train/epoch_loss")] == pytest.approx([h["train_loss"] for h in history],
                                                                                  rel=1e-6)
    assert [e.step for e in events.Scalars("val/accuracy")] == [h["step"] for h in history]
    assert [e.value for e in events.Scalars("val/accuracy")] == pytest.approx([h["val"]["accuracy"] for h in history])
