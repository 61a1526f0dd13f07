"""Instruction tuning scored on MMLU through the common pipeline (run / grid / report), the ``untuned`` row,
and the ``natural-instructions`` task on the real BIG-bench and MMLU files."""

from __future__ import annotations

import json

import pytest
from toy import instruction_records, lm_tokenizer, tiny_llama, tiny_llama_build, toy_loader, toy_task, toy_text_build

from asymlora.data import get_task
from asymlora.data.mmlu import CATEGORIES, MMLUQuestion
from asymlora.data.task import DataError
from asymlora.evaluation.mmlu import score_mmlu
from asymlora.experiments import Grid, RunSpec, build_tables, collect, run, run_grid
from asymlora.experiments.methods import MethodError
from asymlora.experiments.report import markdown
from asymlora.tasks.instruction_mmlu import InstructionMMLUTask, MMLUQuestions
from asymlora.tasks.protocol import EvalContext, Limits
from asymlora.train import make_accelerator

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

# Questions in the toy vocabulary, one subject of each category (the letters are unknown words to it).
QUESTIONS = [
    MMLUQuestion(0, "philosophy", "opposite of up", ("down", "up", "hot", "cold"), "A"),
    MMLUQuestion(1, "virology", "opposite of hot", ("big", "cold", "hot", "slow"), "B"),
    MMLUQuestion(2, "econometrics", "repeat fast", ("slow", "no", "fast", "in"), "C"),
    MMLUQuestion(3, "abstract algebra", "opposite of yes", ("yes", "left", "out", "no"), "D"),
    MMLUQuestion(4, "philosophy", "repeat left", ("left", "right", "up", "down"), "A"),
]


@pytest.fixture(scope="module")
def task():
    recs = instruction_records()
    return InstructionMMLUTask(name="toy-mmlu", splits={"train": recs[:20], "validation": recs[20:24],
                                                        "test": QUESTIONS}, source="tests")


def spec(**kw):
    base = dict(task="toy-mmlu", model="tiny-llama", method="b-only", rank=4, epochs=2, batch_size=4, lrs=(3e-2,),
                checkpoint_every=0, eval_batch_size=8)
    base.update(kw)
    return RunSpec(**base)


def test_metrics_names_and_selection(task):
    assert task.primary_metric == "letter_accuracy" and task.selection_metric == "loss"
    assert not task.selection_higher_is_better
    assert "cloze_norm_social_sciences_accuracy" in task.report_metrics and "letter_accuracy" in task.report_metrics
    data = task.encode("test", lm_tokenizer(), Limits(max_examples=3))
    assert isinstance(data, MMLUQuestions) and [q.index for q in data.questions] == [0, 1, 4]  # seeded subset
    with pytest.raises(ValueError, match="unknown scorer"):
        InstructionMMLUTask(name="x", splits=task.splits, scorers=("letters",))


def test_run_selects_on_the_loss_and_scores_mmlu_with_records(task, tmp_path):
    s = spec()
    result = run(s, tmp_path, loader=toy_loader(task, tiny_llama_build), progress=False, echo=None)
    assert result["primary_metric"] == "letter_accuracy" and result["selection_metric"] == "loss"
    assert {"loss", "perplexity"} <= set(result["val"]) and "loss" in result["train"]
    assert result["gap"] == {}  # the training split has an instruction loss, not an MMLU accuracy
    t = result["test"]
    for scorer in ("letter", "cloze", "cloze_norm"):
        assert 0.0 <= t[f"{scorer}_accuracy_low"] <= t[f"{scorer}_accuracy"] <= t[f"{scorer}_accuracy_high"] <= 1
        assert {f"{scorer}_{c}_accuracy" for c in ("humanities", "stem", "social_sciences", "other")} <= set(t)
    assert t["letter_accuracy"] == 0.4  # the letters are one unknown token: ties go to A, right for 2 of 5
    lines = (tmp_path / s.relpath() / "predictions.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert [r["index"] for r in recs] == [0, 1, 2, 3, 4] and all(len(r["cloze"]["logprobs"]) == 4 for r in recs)
    cloze = sum(r["cloze"]["choice"] == r["answer"] for r in recs) / 5
    assert t["cloze_accuracy"] == pytest.approx(cloze)


def test_untuned_evaluates_the_base_model_as_it_is(task, tmp_path):
    s = spec(method="untuned", lrs=(1e-3,), rank=None, sweep=True)
    assert s.lrs == () and s.resolved_lrs() == (0.0,) and s.relpath().parts[-2] == "untuned"
    result = run(s, tmp_path, loader=toy_loader(task, tiny_llama_build), progress=False, echo=None)
    assert result["trainable_params"] == 0 and result["steps"] == 0 and result["selected_epoch"] == 0
    base = tiny_llama(0)
    want = score_mmlu(base, lm_tokenizer(), QUESTIONS)
    got = [json.loads(x) for x in (tmp_path / s.relpath() / "predictions.jsonl").read_text().splitlines()]
    flat = [x for r in got for x in r["cloze"]["logprobs"]]
    assert flat == pytest.approx([x for r in want for x in r["cloze"]["logprobs"]], abs=1e-5)
    val = task.evaluate(base, task.encode("validation", lm_tokenizer(), Limits(max_length=256)),
                        EvalContext(make_accelerator(), batch_size=8, progress=False)).metrics
    assert result["val"]["loss"] == pytest.approx(val["loss"], rel=1e-6)


def test_untuned_refuses_a_new_random_head(tmp_path):
    text = toy_task(64, 16, 16)
    with pytest.raises(MethodError, match="new, randomly initialised head"):
        run(RunSpec(task=text.name, model="toy-bert", method="untuned", epochs=1), tmp_path,
            loader=toy_loader(text, toy_text_build()), progress=False, echo=None)


def test_grid_report_lays_out_table_8(task, tmp_path):
    g = Grid.build(tasks=[task.name], methods=["untuned", "lora:4", "b-only:4"], seeds=[0, 1], epochs=1,
                   batch_size=4, lrs=[3e-2], model="tiny-llama", checkpoint_every=0)
    outcome = run_grid(g, tmp_path, loader=toy_loader(task, tiny_llama_build), progress=False, echo=lambda m: None)
    assert len(outcome.done) == 6
    (table,) = build_tables(collect(tmp_path))
    md = markdown(table)
    assert "Test metrics of toy-mmlu" in md and "letter_stem_accuracy" in md and "Untuned" in md
    row = next(line for line in md.splitlines() if line.startswith("| Untuned") and "40.0" in line)
    assert "± 0.0" in row  # the untuned model gives the same figures for every seed, shown in percent


@pytest.mark.slow
def test_natural_instructions_task_from_the_real_files():
    t = get_task("natural-instructions", per_subtask="3", per_subject="2")
    sizes = t.summary()["sizes"]
    assert sizes["test"] == 114 and t.summary()["test_subjects"] == 57  # 2 questions of each of 57 subjects
    assert 150 <= sizes["train"] + sizes["validation"] <= 183 and sizes["validation"] >= 1  # 61 × 3, minus drops
    assert {q.category for q in t.part("test")} == set(CATEGORIES)
    assert t.summary()["fingerprint"] == get_task("natural-instructions", per_subtask="3", per_subject="2").summary()["fingerprint"]
    with pytest.raises(DataError, match="per_subtask must be an integer or 'all'"):
        get_task("natural-instructions", per_subtask="many")
    with pytest.raises(DataError, match="unknown scorer"):
        get_task("natural-instructions", per_subtask="1", scorers="letter,clozed")


def test_an_instruction_file_is_scored_on_mmlu(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"instruction": f"say {i}", "output": f"{i}"} for i in range(40)] + [{"instruction": "say 0", "output": "x"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = get_task(str(path), task_kind="instructions", per_subject="1", validation="0.25", scorers="cloze")
    assert t.name == "mine" and t.primary_metric == "cloze_accuracy" and len(t.part("test")) == 57
    assert len(t.part("train")) + len(t.part("validation")) == 40  # the repeated prompt dropped
    with pytest.raises(DataError, match="too few for a train and a validation split"):
        get_task(str(path), task_kind="instructions", validation="0")
