"""The mean-pooling task head (``--pooling mean``): its math, loading, runs and reports that use it."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from toy import toy_model, toy_task, write_toy_model  # noqa: E402

import asymlora  # noqa: E402
from asymlora.experiments import (  # noqa: E402
    Loader,
    RunSpec,
    build_tables,
    collect,
    run,
)
from asymlora.experiments.spec import ADDED_SETTINGS  # noqa: E402
from asymlora.models import ModelError, load_model  # noqa: E402
from asymlora.models.pooling import MeanPoolingClassifier, mean_pool  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_toy_model(tmp_path_factory.mktemp("pool") / "model")


@pytest.fixture(scope="module")
def task():
    return toy_task(n_train=96, n_val=32, n_test=32)


def encoder_and_head(kind: str = "classification") -> MeanPoolingClassifier:
    bert = toy_model(num_labels=3).bert
    torch.manual_seed(0)
    head = MeanPoolingClassifier(bert, 3, "regression" if kind == "regression" else "single_label_classification")
    return head.eval()


def test_mean_pool_ignores_padding_and_equals_the_masked_average():
    h = torch.randn(2, 4, 5)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    pooled = mean_pool(h, mask)
    assert torch.allclose(pooled[0], h[0, :2].mean(0)) and torch.allclose(pooled[1], h[1].mean(0))
    assert torch.allclose(mean_pool(h, None), h.mean(1))


def test_logits_are_the_head_on_mean_pooled_states_and_padding_does_not_change_them():
    model = encoder_and_head()
    ids = torch.tensor([[2, 7, 9, 3]])
    padded = torch.tensor([[2, 7, 9, 3, 0, 0]])
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    out_pad = model(input_ids=padded, attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0]]))
    states = model.encoder(input_ids=ids).last_hidden_state
    assert torch.allclose(out.logits, model.classifier(states.mean(1)), atol=1e-6)
    assert torch.allclose(out.logits, out_pad.logits, atol=1e-5)
    labels = torch.tensor([2])
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(out.logits, labels))


def test_regression_head_has_one_output_and_a_squared_error_loss():
    model = encoder_and_head("regression")
    ids = torch.tensor([[2, 7, 9, 3], [2, 8, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    y = torch.tensor([0.5, -1.0])
    out = model(input_ids=ids, attention_mask=mask, labels=y)
    assert out.logits.shape == (2, 1)
    assert torch.allclose(out.loss, ((out.logits.squeeze(-1) - y) ** 2).mean())
    with pytest.raises(ValueError, match="multi_label"):
        MeanPoolingClassifier(toy_model().bert, 2, "multi_label_classification")


def test_load_model_builds_the_mean_pooling_head_reproducibly(model_dir, task):
    a, _ = load_model(model_dir, task, seed=3, pooling="mean")
    b, _ = load_model(model_dir, task, seed=3, pooling="mean")
    c, _ = load_model(model_dir, task, seed=4, pooling="mean")
    assert isinstance(a, MeanPoolingClassifier) and a.classifier.out_features == task.num_labels
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    # the encoder is the pretrained one, unchanged by the new head
    ref, _ = load_model(model_dir, task, seed=3)
    assert torch.equal(a.encoder.embeddings.word_embeddings.weight, ref.bert.embeddings.word_embeddings.weight)
    with pytest.raises(ModelError, match="unknown pooling 'max'"):
        load_model(model_dir, task, pooling="max")


def spec(model_dir, **kw):
    base = dict(task="toy", model=str(model_dir), pooling="mean", method="linear-probe", epochs=2, batch_size=16,
                lrs=(1e-2,), extra_tests=False, checkpoint_every=0)
    base.update(kw)
    return RunSpec(**base)


@pytest.mark.parametrize("method,rank", [("linear-probe", None), ("b-only", 4)])
def test_runs_with_the_mean_pooling_head_train_save_and_reload(model_dir, task, tmp_path, method, rank):
    s = spec(model_dir, method=method, rank=rank, targets=("query", "value"))
    result = run(s, tmp_path, loader=Loader(tasks={"toy": task}), progress=False, echo=None)
    rd = tmp_path / s.relpath()
    assert rd.parent.parent.name == "model+mean-pool"
    assert result["pooling"] == "mean" and result["model"] == str(model_dir)
    if method == "linear-probe":
        saved = json.loads((rd / "adapter" / "method.json").read_text())
        assert saved["parameters"] == ["classifier.bias", "classifier.weight"]
    else:
        names = asymlora.checkpoint.read_meta(rd / "adapter")["layers"]
        assert names and all(n.startswith("encoder.encoder.layer.") for n in names)
    with pytest.raises(ValueError, match="pooling must be one of"):
        spec(model_dir, pooling="max")


def test_folders_written_before_pooling_existed_still_match_and_report(model_dir, task, tmp_path):
    s = spec(model_dir, pooling="model")
    first = run(s, tmp_path, loader=Loader(tasks={"toy": task}), progress=False, echo=None)
    rd = tmp_path / s.relpath()
    for name in ("config.json", "result.json"):  # make the folder look like one written before the setting
        data = json.loads((rd / name).read_text())
        for key in ADDED_SETTINGS:
            data["spec"].pop(key)
        data.pop("pooling", None)
        (rd / name).write_text(json.dumps(data))
    never = Loader(tasks={"toy": task}, build=lambda *a: pytest.fail("trained again"))
    assert run(s, tmp_path, loader=never, progress=False, echo=None)["test"] == first["test"]
    run(spec(model_dir), tmp_path, loader=Loader(tasks={"toy": task}), progress=False, echo=None)  # mean-pooling twin
    tables = {t.model: t for t in build_tables(collect(tmp_path))}
    assert set(tables) == {str(model_dir), f"{model_dir}+mean-pool"}
    assert all(t.rows == [("linear-probe", None)] for t in tables.values())
