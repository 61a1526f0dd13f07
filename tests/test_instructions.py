"""Instruction records: natural_instructions (real bigbench files), user JSONL, incremental ShareGPT, splits,
repeats and the MMLU overlap check."""

from __future__ import annotations

import json

import pytest

from asymlora.data import instructions as ins
from asymlora.data.mmlu import MMLUQuestion
from asymlora.data.task import DataError


def rec(i, instruction="Do it.", inp="", response="ok"):
    return ins.InstructionRecord(instruction, inp, response, f"u:{i}", "test")


def test_natural_instructions_subtasks_from_the_pinned_sdist():
    names = ins.natural_instruction_subtasks()
    assert len(names) == 61 and names[0] == "subtask001_quoref_question_generation"
    recs = ins.load_natural_instructions(["subtask053_multirc_correct_bad_question"])
    assert len(recs) == 58
    r = recs[0]
    assert r.instruction.startswith("Definition:") and r.input and r.response
    assert r.uid == "subtask053_multirc_correct_bad_question:0" and r.source.startswith("bigbench==1.0.0:")
    few = ins.load_natural_instructions(["subtask053_multirc_correct_bad_question"], per_subtask=5)
    assert len(few) == 5 and [r.uid for r in few] == sorted((r.uid for r in few), key=lambda u: int(u.split(":")[1]))
    assert few == ins.load_natural_instructions(["subtask053_multirc_correct_bad_question"], per_subtask=5)
    with pytest.raises(DataError, match="unknown natural_instructions subtask"):
        ins.load_natural_instructions(["subtask999"])


def test_user_jsonl_alpaca_and_chat(tmp_path):
    path = tmp_path / "mine.jsonl"
    lines = [{"instruction": "Add.", "input": "2 3", "output": "5"},
             {"instruction": "Greet.", "output": "Hello"},
             {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                           {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "More"}]}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    recs = ins.load_instruction_file(path)
    assert [(r.instruction, r.input, r.response) for r in recs] == [("Add.", "2 3", "5"), ("Greet.", "", "Hello"),
                                                                     ("Hi?", "", "Hi.")]
    assert recs[2].uid == "mine.jsonl:3"
    path.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(DataError, match="line 1: needs 'instruction' and 'output'"):
        ins.load_instruction_file(path)
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(DataError, match="no user turn followed by an assistant turn"):
        ins.load_instruction_file(path)
    path.write_text('{"instruction": "a", "output": ""}\n')
    with pytest.raises(DataError, match="empty instruction or response"):
        ins.load_instruction_file(path)


def test_json_list_is_read_incrementally_and_a_cut_item_dropped(tmp_path):
    items = [{"id": i, "conversations": [{"from": "human", "value": "q" * (i + 1)}, {"from": "gpt", "value": "a"}]}
             for i in range(50)]
    text = json.dumps(items, indent=2)
    path = tmp_path / "cut.json"
    path.write_text(text[: text.rindex('{"id": 49') if '{"id": 49' in text else len(text) - 40])
    got = list(ins.iter_json_list(path, chunk_chars=64))  # many chunk boundaries inside items
    assert got == items[:len(got)] and 45 <= len(got) <= 49
    path.write_text(text)
    assert list(ins.iter_json_list(path, chunk_chars=7)) == items


def test_repeats_and_splits_are_order_independent():
    recs = [rec(i, inp=f"x{i % 40}", response=f"r{i}") for i in range(60)]  # 20 repeated prompts
    kept, repeats = ins.dedupe_records(recs)
    assert len(kept) == 40 and repeats == 20 and kept[0].response == "r0"
    a = ins.split_records(kept, validation=0.1, seed=0)
    b = ins.split_records(list(reversed(kept)), validation=0.1, seed=0)
    assert (len(a["train"]), len(a["validation"])) == (36, 4)
    assert {r.uid for r in a["validation"]} == {r.uid for r in b["validation"]}
    assert {r.uid for r in ins.split_records(kept, 0.1, seed=1)["validation"]} != {r.uid for r in a["validation"]}


def test_mmlu_overlap_finds_a_planted_question():
    q = MMLUQuestion(42, "virology", "Which of the following viruses is most likely to cause a pandemic in the "
                     "next decade according to experts?", ("a", "b", "c", "d"), "A")
    short = MMLUQuestion(43, "virology", "What is a virus?", ("a", "b", "c", "d"), "A")
    clean = rec(1, response="Viruses are small.")
    planted = rec(2, inp="Quiz: which of the following VIRUSES is most likely to cause a pandemic, in the next "
                             "decade according to experts? Explain.")
    near = rec(3, inp="which of the following viruses is most likely to cause a pandemic soon")  # 12 words
    assert ins.mmlu_overlap([clean, planted, near], [q, short]) == [("u:2", 42)]
    kept, hits = ins.without_mmlu_overlap([clean, planted, near], [q, short])
    assert kept == [clean, near] and hits == [("u:2", 42)]
