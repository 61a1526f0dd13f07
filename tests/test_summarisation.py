"""Summarisation scored by ROUGE (the paper's Table 6): data, encoding, generation, scoring and whole runs on a
tiny Llama and a tiny BART, and the real ``xsum`` / ``cnn-dm`` tasks."""

from __future__ import annotations

import json

import pytest
import torch
from toy import (
    lm_tokenizer,
    seq2seq_tokenizer,
    summary_pairs,
    tiny_bart,
    tiny_llama,
    tiny_llama_build,
    toy_loader,
    toy_summary_task,
    write_tiny_bart,
)

import asymlora
from asymlora.cli import main
from asymlora.data import get_task
from asymlora.data.summaries import load_summary_file, split_pairs
from asymlora.data.task import DataError
from asymlora.evaluation.generate import GenerationSettings, generate_ids
from asymlora.evaluation.rouge import rouge_records, rouge_summary, sentence_lines
from asymlora.experiments import Grid, Loader, RunSpec, build_tables, collect, run, run_grid
from asymlora.experiments.report import markdown
from asymlora.tasks.lm_format import IGNORE_INDEX, pad_batch, text_ids
from asymlora.tasks.protocol import EvalContext, Limits
from asymlora.train import make_accelerator

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def spec(**kw):
    base = dict(task="toy-summaries", model="tiny-llama", method="b-only", rank=4, epochs=2, batch_size=4,
                lrs=(3e-2,), checkpoint_every=0, eval_batch_size=8, targets=("q_proj", "k_proj", "v_proj"))
    base.update(kw)
    return RunSpec(**base)


# --- ROUGE ------------------------------------------------------------------------------------------------------
def test_rouge_on_a_hand_checked_pair():
    # reference: the cat sat on the mat (6 tokens); candidate: the cat lay on a mat (6 tokens)
    # unigrams in common (multiset): the, cat, on, mat = 4 → P = R = F = 4/6
    # bigrams: ref {the cat, cat sat, sat on, on the, the mat}, cand {the cat, cat lay, lay on, on a, a mat}: 1 → 1/5
    # LCS: the cat on mat = 4 → 4/6
    (r,) = rouge_records(["the cat sat on the mat"], ["the cat lay on a mat"])
    assert r["rouge1"] == pytest.approx(4 / 6) and r["rouge2"] == pytest.approx(1 / 5)
    assert r["rougeL"] == pytest.approx(4 / 6) and r["rougeLsum"] == pytest.approx(4 / 6)
    (stemmed,) = rouge_records(["Cats were running"], ["the cat runs"])  # stemming: cat(s), run(ning/s)
    assert stemmed["rouge1"] == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    assert sentence_lines("One. Two!  Three?\nFour") == "One.\nTwo!\nThree?\nFour"
    # ROUGE-Lsum sees sentences: reference "a b. c d." against candidate "c d. a b." → every sentence matches
    (lsum,) = rouge_records(["a b. c d."], ["c d. a b."])
    assert lsum["rougeLsum"] == pytest.approx(1.0) and lsum["rougeL"] == pytest.approx(0.5)
    summary = rouge_summary([{"rouge1": x, "rouge2": 0.0, "rougeL": x, "rougeLsum": x} for x in (0.2, 0.4, 0.6)])
    assert summary["rouge1"] == pytest.approx(0.4) and 0.2 <= summary["rouge1_low"] <= 0.4 <= summary["rouge1_high"] <= 0.6
    with pytest.raises(ValueError, match="2 references for 1"):
        rouge_records(["a", "b"], ["a"])


# --- encoding ---------------------------------------------------------------------------------------------------
def test_causal_encoding_puts_the_loss_on_the_summary_only():
    task = toy_summary_task()
    tok = lm_tokenizer()
    data = task.encode("train", tok, Limits(max_length=64))
    pair = task.part("train")[0]
    item = data[0]
    n_prompt = sum(y == IGNORE_INDEX for y in item["labels"])
    assert data.prompts[0] == item["input_ids"][:n_prompt]  # generation starts from exactly the training prompt
    summary = [y for y in item["labels"] if y != IGNORE_INDEX]
    assert summary == text_ids(tok, pair.summary + " <|end|>")  # the summary and the end-of-turn token
    assert tok.decode(data.prompts[0]).startswith("<|user|> repeat") and pair.document in tok.decode(data.prompts[0])
    assert data.references[0] == pair.summary and data.uids[0] == pair.uid
    assert not data.generate and task.encode("test", tok, Limits()).generate  # train scored by loss only


def test_a_long_document_is_cut_to_its_token_budget():
    task = toy_summary_task()
    tok = lm_tokenizer()
    budget = task.document_budget(tok, 14)  # L − S − T: 14 − 4 − the template's 5 tokens
    assert budget == 14 - 4 - len(text_ids(tok, "<|user|> repeat\n\n. <|end|> <|assistant|> "))
    data = task.encode("train", tok, Limits(max_length=14))
    assert max(data.lengths) <= 14 and len(data) == 30 and data.dropped == 0
    for prompt, pair in zip(data.prompts, task.part("train")):
        words = tok.decode(prompt).split()
        kept = words[words.index("repeat") + 1:words.index("<|end|>")]
        assert kept == pair.document.split()[:budget]  # the document's first `budget` tokens
    with pytest.raises(ValueError, match="raise --max-length"):
        task.encode("train", tok, Limits(max_length=8))


def test_seq2seq_encoding_and_its_batches_pad_documents_and_summaries_apart():
    task = toy_summary_task().with_head("seq2seq-lm")
    tok = seq2seq_tokenizer()
    data = task.encode("train", tok, Limits(max_length=6))
    pair = task.part("train")[0]
    assert data[0]["input_ids"] == text_ids(tok, pair.document)[:5] + [1]  # cut to 6 tokens, the last one EOS
    assert data[0]["labels"] == text_ids(tok, pair.summary) + [1]
    batch = pad_batch([data[0], data[1]], data.pad_token_id)
    assert batch["input_ids"].shape == (2, 6) and batch["labels"].shape == (2, 3)  # summaries are not padded to 6


# --- generation -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["causal", "seq2seq"])
def test_batched_generation_equals_one_at_a_time_and_is_deterministic(family):
    encoder_decoder = family == "seq2seq"
    model = tiny_bart(3) if encoder_decoder else tiny_llama(3)
    tok = seq2seq_tokenizer() if encoder_decoder else lm_tokenizer()
    prompts = [text_ids(tok, p.document) for p in summary_pairs(7, seed=5)]
    assert len({len(p) for p in prompts}) > 2  # ragged: padding matters
    for beams in (1, 3):
        settings = GenerationSettings(max_new_tokens=6, num_beams=beams, batch_size=4)
        batched = generate_ids(model, prompts, settings, pad_token_id=0, eos_token_id=1,
                               encoder_decoder=encoder_decoder)
        alone = [generate_ids(model, [p], settings, pad_token_id=0, eos_token_id=1, encoder_decoder=encoder_decoder)[0]
                 for p in prompts]
        assert batched == alone and batched == generate_ids(model, prompts, settings, pad_token_id=0, eos_token_id=1,
                                                            encoder_decoder=encoder_decoder)
        assert all(len(row) <= 6 and 1 not in row for row in batched) and sum(map(len, batched)) > 10  # cut at EOS
    no_repeat = generate_ids(model, prompts, GenerationSettings(max_new_tokens=12, no_repeat_ngram_size=1),
                             pad_token_id=0, eos_token_id=1, encoder_decoder=encoder_decoder)
    assert all(len(set(row)) == len(row) for row in no_repeat)
    with pytest.raises(ValueError, match="num_beams must be ≥ 1"):
        GenerationSettings(num_beams=0)


# --- whole runs -------------------------------------------------------------------------------------------------
def _check_run(result, folder, fresh_model, tokenizer, task, encoder_decoder):
    assert result["primary_metric"] == "rougeL" and result["selection_metric"] == "loss"
    assert result["gap"] == {} and "loss" in result["train"] and "rougeL" not in result["train"]
    recs = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == [p.uid for p in task.part("test")]
    for name in ("rouge1", "rouge2", "rougeL"):
        assert result["test"][name] == pytest.approx(sum(r[name] for r in recs) / len(recs))
        assert result["test"][f"{name}_low"] <= result["test"][name] <= result["test"][f"{name}_high"]
    assert result["test"]["generation_docs_per_s"] > 0
    # the saved adapter on a fresh base generates the very summaries the run wrote
    model = asymlora.load_adapter(fresh_model, folder / "adapter")
    data = task.encode("test", tokenizer, Limits(max_length=result["spec"]["max_length"]))
    ids = generate_ids(model, data.prompts, task.generation, pad_token_id=data.pad_token_id,
                       eos_token_id=tokenizer.eos_token_id, encoder_decoder=encoder_decoder)
    assert [tokenizer.decode(r, skip_special_tokens=True).strip() for r in ids] == [r["generated"] for r in recs]
    return recs


def test_tiny_llama_trains_saves_reloads_and_generates(tmp_path):
    task = toy_summary_task()
    s = spec(epochs=6, lrs=(1e-1,), max_length=32)
    result = run(s, tmp_path, loader=toy_loader(task, tiny_llama_build), progress=False, echo=None)
    _check_run(result, tmp_path / s.relpath(), tiny_llama(0), lm_tokenizer(), task, False)
    untuned = run(spec(method="untuned", rank=None, max_length=32), tmp_path, loader=toy_loader(task, tiny_llama_build),
                  progress=False, echo=None)
    assert result["val"]["loss"] < untuned["val"]["loss"] - 0.15  # it learned something (3.10 → 2.92)


def test_tiny_bart_by_folder_takes_the_seq2seq_head_and_runs_through(tmp_path):
    folder = write_tiny_bart(tmp_path / "bart")
    task = toy_summary_task()
    s = spec(model=str(folder), epochs=6, lrs=(1e-1,), max_length=16)
    result = run(s, tmp_path / "runs", loader=Loader(tasks={task.name: task}), progress=False, echo=None)  # real build
    assert result["head"] == "seq2seq-lm"
    _check_run(result, tmp_path / "runs" / s.relpath(), tiny_bart(0), seq2seq_tokenizer(), task.with_head("seq2seq-lm"),
               True)
    base = task.with_head("seq2seq-lm")
    ctx = EvalContext(make_accelerator(), batch_size=8, progress=False)
    untrained = base.evaluate(tiny_bart(0), base.encode("validation", seq2seq_tokenizer(), Limits(max_length=16)), ctx)
    assert result["val"]["loss"] < untrained.metrics["loss"] - 0.15  # 3.15 → 2.94
    torch.testing.assert_close(torch.tensor(untrained.metrics["perplexity"]),
                               torch.tensor(untrained.metrics["loss"]).exp())


def test_grid_report_lays_out_table_6(tmp_path):
    task = toy_summary_task()
    g = Grid.build(tasks=[task.name], methods=["untuned", "b-only:4", "a-only:4"], seeds=[0, 1], epochs=1,
                   batch_size=4, lrs=[3e-2], model="tiny-llama", checkpoint_every=0, max_length=32,
                   targets=["q_proj", "k_proj", "v_proj"])
    outcome = run_grid(g, tmp_path, loader=toy_loader(task, tiny_llama_build), progress=False, echo=lambda m: None)
    assert len(outcome.done) == 6
    (table,) = build_tables(collect(tmp_path))
    md = markdown(table)
    assert "Test metrics of toy-summaries" in md
    assert "| Method | rouge1 | rouge2 | rougeL |" in md and "rougeLsum" not in md  # Table 6's columns, XSum-like
    assert "train − test gap" not in md  # train is scored by its loss only: no empty ROUGE gap table
    row = next(line for line in md.splitlines() if line.startswith("| Untuned"))
    assert "± 0.0" in row  # the untuned model scores the same for every seed (in percent)


# --- data -------------------------------------------------------------------------------------------------------
def test_a_summary_file_with_and_without_a_split_column(tmp_path):
    path = tmp_path / "mine.jsonl"
    lines = [{"document": p.document, "summary": p.summary, "split": ["train", "train", "val", "test"][i % 4]}
             for i, p in enumerate(summary_pairs(20))]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    t = get_task(str(path), task_kind="summarisation", max_new_tokens="8")
    assert t.summary()["sizes"] == {"train": 10, "validation": 5, "test": 5} and t.generation.max_new_tokens == 8
    pairs, split_of = load_summary_file(path)
    assert len(pairs) == 20 and split_of[2] == "validation" and pairs[0].uid == "mine.jsonl:1"
    plain = tmp_path / "plain.csv"
    plain.write_text("document,summary\n" + "".join(f"{p.document},{p.summary}\n" for p in summary_pairs(30)))
    assert get_task(str(plain), task_kind="summarisation").summary()["sizes"] == {"train": 24, "validation": 3,
                                                                                   "test": 3}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"document": "up down", "summary": ""}) + "\n")
    with pytest.raises(DataError, match="empty 'document' or 'summary'"):
        get_task(str(bad), task_kind="summarisation")
    with pytest.raises(DataError, match="num_beams must be an integer"):
        get_task(str(plain), task_kind="summarisation", num_beams="wide")


def test_splits_are_seeded_and_independent_of_the_file_order():
    pairs = summary_pairs(40)
    a, b = split_pairs(pairs, seed=0), split_pairs(list(reversed(pairs)), seed=0)
    assert {k: sorted(p.uid for p in v) for k, v in a.items()} == {k: sorted(p.uid for p in v) for k, v in b.items()}
    assert [len(v) for v in a.values()] == [30, 2, 8]
    assert sorted(p.uid for p in split_pairs(pairs, seed=1)["test"]) != sorted(p.uid for p in a["test"])


@pytest.mark.slow
def test_xsum_and_cnn_dm_from_the_real_bigbench_files():
    xsum = get_task("xsum")
    assert xsum.summary()["sizes"] == {"train": 751, "validation": 50, "test": 200}
    assert xsum.summary()["fingerprint"] == "7a001f6eaff4d20c"
    assert xsum.report_metrics == ("rouge1", "rouge2", "rougeL")
    cnn = get_task("cnn-dm")
    assert cnn.summary()["sizes"] == {"train": 90, "validation": 15, "test": 45}
    assert "rougeLsum" in cnn.report_metrics
    assert sum("\n" in p.summary for p in cnn.part("test")) >= 40  # highlights, one a line
    assert all(p.summary.isascii() or p.summary[:1].isupper() for p in cnn.part("test"))
    with pytest.raises(DataError, match="select_on"):
        get_task("xsum", select_on="bleu")


@pytest.mark.slow
def test_smollm2_summarises_xsum_through_the_cli(tmp_path, capsys):
    rc = main(["run", "--task", "xsum", "--model", "smollm2", "--method", "b-only", "--rank", "4",
               "--max-train-examples", "4", "--max-val-examples", "2", "--max-test-examples", "3", "--max-length", "256",
               "--epochs", "1", "--batch-size", "2", "--task-option", "max_new_tokens=16", "--quiet",
               "--targets", "q_proj", "k_proj", "v_proj", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    out = captured.out
    assert "test            loss" in out and "rougeL" in out and "train           loss" in out
    folder = tmp_path / "xsum" / "smollm2" / "b-only-r4" / "seed0"
    recs = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all(r["generated"] and 0 <= r["rougeL"] <= 1 for r in recs)
