"""One pipeline for every modality: a causal-LM instruction task and image tasks through run, grid, report,
kill-and-resume and reload, the way the text tasks go (tiny models and data built in the test)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("accelerate")
pytest.importorskip("transformers")

from toy import lm_tokenizer, tiny_llama_build, tiny_vision_build, toy_image_task, toy_instruction_task  # noqa: E402

import asymlora  # noqa: E402
from asymlora.experiments import Grid, Loader, RunSpec, build_tables, collect, run, run_grid, write_report  # noqa: E402
from asymlora.experiments.report import markdown  # noqa: E402
from asymlora.tasks.lm_format import IGNORE_INDEX  # noqa: E402
from asymlora.tasks.protocol import EvalContext, Limits  # noqa: E402
from asymlora.train import make_accelerator  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def lm_task():
    return toy_instruction_task()


@pytest.fixture(scope="module")
def image_task():
    return toy_image_task()


def lm_spec(**kw):
    base = dict(task="toy-instruct", model="tiny-llama", method="b-only", rank=4, epochs=3, batch_size=4,
                lrs=(3e-2,), checkpoint_every=3, eval_batch_size=8)
    base.update(kw)
    return RunSpec(**base)


def image_spec(**kw):
    base = dict(task="toy-images", model="tiny-vit", method="b-only", rank=4, epochs=3, batch_size=8,
                lrs=(2e-2,), checkpoint_every=3)
    base.update(kw)
    return RunSpec(**base)


def reevaluate(task, loaded, folder, split, spec):
    model = asymlora.load_adapter(loaded.model, folder)
    data = task.encode(split, loaded.preprocessor, Limits(max_length=spec.max_length, image_size=spec.image_size))
    return task.evaluate(model, data, EvalContext(make_accelerator(), batch_size=8, progress=False)).metrics


# --- causal LM --------------------------------------------------------------------------------------------
def test_instruction_encoding_masks_the_prompt(lm_task):
    data = lm_task.encode("train", lm_tokenizer(), Limits(max_length=32))
    item = data[0]
    n_prompt = item["labels"].count(IGNORE_INDEX)
    assert n_prompt > 0 and item["labels"][n_prompt:] == item["input_ids"][n_prompt:]
    batch = data.collate([data[i] for i in range(4)])
    assert batch["input_ids"].shape == batch["labels"].shape and (batch["labels"] == IGNORE_INDEX).any()


def test_causal_lm_run_trains_saves_reloads_and_records_train_val_test(lm_task, tmp_path):
    loader = Loader(tasks={lm_task.name: lm_task}, build=tiny_llama_build)
    s = lm_spec()
    result = run(s, tmp_path, loader=loader, progress=False, echo=None)
    assert result["head"] == "causal-lm" and result["primary_metric"] == "loss" and not result["higher_is_better"]
    assert result["spec"]["max_length"] == 256  # the instruction task's default length
    for split in ("train", "val", "test"):
        assert {"loss", "perplexity", "token_accuracy"} <= set(result[split])
    assert result["gap"]["test"] == pytest.approx(result["train"]["loss"] - result["test"]["loss"])
    curve = [json.loads(x) for x in (tmp_path / s.relpath() / "metrics.jsonl").read_text().splitlines()]
    assert curve[-1]["train_loss"] < curve[0]["train_loss"]  # it learned something
    # throughput of the training steps: every training example once per epoch, its unpadded tokens counted
    n_train = len(lm_task.part("train"))
    data = lm_task.encode("train", lm_tokenizer(), Limits(max_length=256))
    tokens = sum(data.lengths)
    assert [(r["train_examples"], r["train_tokens"]) for r in curve] == [(n_train, tokens)] * s.epochs
    speed = result["train_throughput"]
    seconds = sum(r["train_step_s"] for r in curve)
    assert 0 < seconds < result["train_seconds"]  # validation not counted
    assert speed["examples_per_s"] == pytest.approx(n_train * s.epochs / seconds)
    assert speed["tokens_per_s"] == pytest.approx(tokens * s.epochs / seconds)
    assert result["train"]["loss"] < 3.09  # below the uniform guess over 22 words, log 22
    # B-only stores B alone; no new head on a language model
    meta = asymlora.checkpoint.read_meta(tmp_path / s.relpath() / "adapter")
    assert meta["layers"] and all(not e["A"]["stored"] for e in meta["layers"].values())
    assert meta["config"]["train_modules"] in ([], None, ())
    # the saved adapter on a fresh base gives exactly the reported numbers
    fresh = Loader(tasks={lm_task.name: lm_task}, build=tiny_llama_build).model(s, lm_task)
    assert reevaluate(lm_task, fresh, tmp_path / s.relpath() / "adapter", "test", s.resolved(lm_task)) == result["test"]


def test_causal_lm_killed_run_resumes_to_the_same_adapter(lm_task, tmp_path):
    s = lm_spec(method="lora")
    ref = run(s, tmp_path / "ref", loader=Loader(tasks={lm_task.name: lm_task}, build=tiny_llama_build),
              progress=False, echo=None)

    class Killed(Exception):
        pass

    def kill(event, info):
        if event == "step" and info["step"] == 7:
            raise Killed

    with pytest.raises(Killed):
        run(s, tmp_path / "run", loader=Loader(tasks={lm_task.name: lm_task}, build=tiny_llama_build),
            progress=False, echo=None, callbacks=[kill])
    again = run(s, tmp_path / "run", loader=Loader(tasks={lm_task.name: lm_task}, build=tiny_llama_build),
                progress=False, echo=None)
    assert again["test"] == ref["test"] and again["train"] == ref["train"]
    a = (tmp_path / "ref" / s.relpath() / "adapter" / "adapter.safetensors").read_bytes()
    b = (tmp_path / "run" / s.relpath() / "adapter" / "adapter.safetensors").read_bytes()
    assert a == b


def test_causal_lm_grid_and_report_show_the_gap(lm_task, tmp_path):
    g = Grid.build(tasks=[lm_task.name], methods=["lora:4", "b-only:4"], seeds=[0, 1], epochs=2, batch_size=4,
                   lrs=[3e-2], model="tiny-llama", checkpoint_every=0)
    outcome = run_grid(g, tmp_path, loader=Loader(tasks={lm_task.name: lm_task}, build=tiny_llama_build),
                       progress=False, echo=lambda m: None)
    assert len(outcome.done) == 4
    (table,) = build_tables(collect(tmp_path))
    cell = table.cell(("b-only", 4), lm_task.name)
    assert cell.n == 2 and len(cell.train) == 2 and len(cell.gap["test"]) == 2
    md = markdown(table)
    assert "Train, validation and test loss on toy-instruct" in md and "Gap (test)" in md
    assert "Test metrics of toy-instruct" in md and "perplexity" in md and "token_accuracy" in md
    assert write_report(tmp_path, plots=False)["markdown"].is_file()


# --- images ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,targets", [("vit", None), ("conv", ("stem", "mix"))])
def test_image_run_trains_saves_reloads_and_scores_in_and_out_of_domain(image_task, tmp_path, kind, targets):
    loader = Loader(tasks={image_task.name: image_task}, build=tiny_vision_build(kind))
    s = image_spec(model=f"tiny-{kind}", targets=targets)
    result = run(s, tmp_path, loader=loader, progress=False, echo=None)
    assert result["head"] == "image-classification" and set(result["test_extra"]) == {"noisy"}
    assert result["sizes"] == {"train": 48, "validation": 16, "test": 16, "train_eval": 48, "noisy": 16}
    assert set(result["gap"]) == {"test", "noisy"}
    assert result["gap"]["noisy"] == pytest.approx(result["train"]["accuracy"] - result["test_extra"]["noisy"]["accuracy"])
    meta = asymlora.checkpoint.read_meta(tmp_path / s.relpath() / "adapter")
    assert meta["config"]["train_modules"] == ["classifier"]  # the new head trains in full
    fresh = Loader(tasks={image_task.name: image_task}, build=tiny_vision_build(kind)).model(s, image_task)
    got = reevaluate(image_task, fresh, tmp_path / s.relpath() / "adapter", "noisy", s)
    assert got == result["test_extra"]["noisy"]
    if kind == "conv":  # the Conv2d adapter path, end to end
        assert set(meta["layers"]) == {"stem", "mix"}
        assert all(isinstance(layer, asymlora.AdaptedConv2d) for _, layer in asymlora.adapted_layers(fresh.model))


def test_image_killed_run_resumes_and_grid_reports_environments(image_task, tmp_path):
    s = image_spec(method="lora")
    ref = run(s, tmp_path / "ref", loader=Loader(tasks={image_task.name: image_task}, build=tiny_vision_build()),
              progress=False, echo=None)

    class Killed(Exception):
        pass

    def kill(event, info):
        if event == "step" and info["step"] == 8:
            raise Killed

    with pytest.raises(Killed):
        run(s, tmp_path / "run", loader=Loader(tasks={image_task.name: image_task}, build=tiny_vision_build()),
            progress=False, echo=None, callbacks=[kill])
    again = run(s, tmp_path / "run", loader=Loader(tasks={image_task.name: image_task}, build=tiny_vision_build()),
                progress=False, echo=None)
    assert again["test"] == ref["test"] and again["test_extra"] == ref["test_extra"]
    g = Grid.build(tasks=[image_task.name], methods=["lora:4", "b-only:4", "linear-probe"], seeds=[0, 1], epochs=2,
                   batch_size=8, lrs=[2e-2], model="tiny-vit", checkpoint_every=0)
    run_grid(g, tmp_path / "grid", loader=Loader(tasks={image_task.name: image_task}, build=tiny_vision_build()),
             progress=False, echo=lambda m: None)
    md = write_report(tmp_path / "grid", plots=False)["markdown"].read_text()
    assert "toy-images → noisy" in md and "Gap (noisy)" in md and "Train, validation and test accuracy" in md


def test_image_transform_gives_grey_images_the_backbones_channels():
    from asymlora.models.image_transform import ImageTransform

    t = ImageTransform(size=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    grey = torch.full((2, 1, 8, 8), 255, dtype=torch.uint8)
    out = t(grey)
    assert out.shape == (2, 3, 4, 4) and torch.allclose(out, torch.full_like(out, 2.0))  # (1 − 0.5) / 0.25
    two = torch.zeros((1, 2, 4, 4), dtype=torch.uint8)  # ColoredMNIST's red/green: blue is black
    assert torch.allclose(t(two)[0, 2], torch.full((4, 4), -2.0))
    with pytest.raises(ValueError, match="uint8"):
        t(torch.zeros(1, 3, 4, 4))


def test_a_task_with_several_heads_takes_the_one_the_model_has(tmp_path):
    from transformers import BartConfig, LlamaConfig, ViTConfig

    from asymlora.models.registry import ModelError, choose_head, model_heads

    BartConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1).save_pretrained(tmp_path / "bart")
    cfg = LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.save_pretrained(tmp_path / "llama")
    ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path / "vit")
    generation = ("causal-lm", "seq2seq-lm")
    assert model_heads(str(tmp_path / "bart")) == ("seq2seq-lm",)
    assert choose_head(generation, str(tmp_path / "bart")) == "seq2seq-lm"
    assert choose_head(generation, str(tmp_path / "llama")) == "causal-lm"
    assert choose_head(generation, "smollm2") == "causal-lm"  # a built-in's own list
    assert choose_head(generation, "some-org/unknown-model") == "causal-lm"  # unknown: the task's first
    assert model_heads(str(tmp_path / "vit")) == ("image-classification",)
    with pytest.raises(ModelError, match="takes the heads image-classification"):
        choose_head(generation, str(tmp_path / "vit"))
