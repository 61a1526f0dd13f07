"""Issue 15, finding 9: a user's data file gets the treatment the built-in tasks have (each test failed before).

Line separators inside JSON strings, overlong numbers and deep nesting, a column named twice, ``nan`` labels,
files too small for their splits and texts repeated under two labels, in classification, regression,
instruction and summary files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from asymlora.data import DataError, get_task
from asymlora.data.instructions import load_instruction_file
from asymlora.tasks.summarisation import summary_file_task

SEPARATORS = ["\u2028", "\u2029", "\u0085"]  # split by str.splitlines, written raw by json.dumps(ensure_ascii=False)


def jsonl(tmp_path: Path, name: str, records: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def labelled(n: int, label=lambda i: i % 2) -> list[dict]:
    return [{"text": f"sentence number {i}", "label": label(i)} for i in range(n)]


@pytest.mark.parametrize("separator", SEPARATORS)
def test_line_separators_inside_json_strings_stay_in_their_record(tmp_path, separator):
    records = labelled(40)
    records[3]["text"] = f"first part{separator}second part"
    task = get_task(str(jsonl(tmp_path, "d.jsonl", records)))
    texts = {ex.text for split in task.splits.values() for ex in split}
    assert len(texts) == 40 and f"first part{separator}second part" in texts


def test_instruction_and_summary_files_keep_line_separators(tmp_path):
    inst = jsonl(tmp_path, "i.jsonl", [{"instruction": "say\u2028it", "input": "", "output": "ok\u2029done"},
                                       {"instruction": "two", "output": "2"}])
    records = load_instruction_file(inst)
    assert [(r.instruction, r.response) for r in records] == [("say\u2028it", "ok\u2029done"), ("two", "2")]
    pairs = [{"document": f"doc {i}\u2028line two", "summary": f"sum {i}\u0085"} for i in range(20)]
    task = summary_file_task(jsonl(tmp_path, "s.jsonl", pairs))
    docs = sorted(p.document for split in task.splits.values() for p in split)
    assert docs == sorted(f"doc {i}\u2028line two" for i in range(20))


@pytest.mark.parametrize("line,problem", [
    ('{"text": "b", "label": 1' + "0" * 400 + "}", "digits is too long"),
    ('{"text": "b", "label": 1e400}', "too large for a float"),
    ('{"text": "b", "label": NaN}', "not a JSON number"),
    ('{"text": "b", "label": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    ('{"text": "b", "label": 0, "label": 1}', "duplicate key 'label'"),
])
def test_numbers_nesting_and_duplicate_keys_give_a_data_error_naming_the_line(tmp_path, line, problem):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 0}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=problem) as err:
        get_task(str(path))
    assert err.value.line == 2 and str(path) in str(err.value)


def test_instruction_file_refuses_duplicate_keys_and_deep_nesting(tmp_path):
    path = tmp_path / "i.jsonl"
    path.write_text('{"instruction": "a", "output": "b", "output": "c"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="duplicate key 'output'"):
        load_instruction_file(path)
    path.write_text('{"instruction": "a", "output": ' + "[" * 5000 + "]" * 5000 + "}\n", encoding="utf-8")
    with pytest.raises(DataError, match="nested too deeply"):
        load_instruction_file(path)


@pytest.mark.parametrize("header", ["text,label,label", "text,label,text"])
def test_a_column_named_twice_in_the_header_is_refused(tmp_path, header):
    path = tmp_path / "d.csv"
    path.write_text(header + "\n" + "".join(f"t{i},{i % 2},{(i + 1) % 2}\n" for i in range(30)), encoding="utf-8")
    with pytest.raises(DataError, match="more than once") as err:
        get_task(str(path))
    assert err.value.line == 1


@pytest.mark.parametrize("missing", ["nan", "NaN", "inf", "-inf"])
def test_a_nan_label_is_refused_as_a_missing_value(tmp_path, missing):
    path = tmp_path / "d.csv"
    rows = [f"t{i},{missing if i == 7 else ['pos', 'neg'][i % 2]}" for i in range(30)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing value") as err:
        get_task(str(path), task_kind="classification")
    assert err.value.line == 9


def test_class_ids_do_not_depend_on_the_hash_seed(tmp_path):
    """Class ids come from sorting the labels; run in fresh interpreters under different PYTHONHASHSEEDs."""
    path = tmp_path / "d.csv"
    names = ["x", "10", "b", "2", "a", "1.5"]
    path.write_text("text,label\n" + "".join(f"t{i},{names[i % 6]}\n" for i in range(60)), encoding="utf-8")
    code = ("import sys; from asymlora.data import get_task; "
            "print(get_task(sys.argv[1], task_kind='classification').label_names)")
    outputs = set()
    for hash_seed in ("0", "1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True,
                             check=True)
        outputs.add(run.stdout.strip())
    assert outputs == {"('1.5', '10', '2', 'a', 'b', 'x')"}


@pytest.mark.parametrize("n,label", [(2, lambda i: i % 2), (4, lambda i: i % 2), (4, lambda i: i / 3)])
def test_a_file_too_small_for_its_splits_fails_when_read(tmp_path, n, label):
    rows = [{"text": f"t{i}", "label": label(i)} for i in range(n)]
    with pytest.raises(DataError, match=r"split(s are| is) empty \(train \d+, validation \d+, test \d+ examples\)"):
        get_task(str(jsonl(tmp_path, "d.jsonl", rows)))


def test_a_split_column_that_leaves_a_split_empty_fails_when_read(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 2, "split": "train" if i else "test"} for i in range(3)]
    with pytest.raises(DataError, match="validation split is empty"):
        get_task(str(jsonl(tmp_path, "d.jsonl", rows)))


def test_a_summary_file_too_small_for_its_splits_fails_when_read(tmp_path):
    pairs = [{"document": f"doc {i}", "summary": f"sum {i}"} for i in range(3)]
    with pytest.raises(DataError, match="split"):
        summary_file_task(jsonl(tmp_path, "s.jsonl", pairs))


def test_a_text_under_two_labels_is_dropped_and_repeats_keep_their_first_row(tmp_path):
    records = labelled(40)
    records += [{"text": "sentence number 3", "label": 0},    # 3 has label 1: a conflict, all three rows go
                {"text": "sentence number 3", "label": 1},
                {"text": "sentence number 4", "label": 0}]    # 4 has label 0: a plain repeat, one row kept
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = get_task(str(jsonl(tmp_path, "d.jsonl", records)))
    texts = [ex.text for split in task.splits.values() for ex in split]
    assert len(texts) == 39 and len(set(texts)) == 39
    assert "sentence number 3" not in texts and "sentence number 4" in texts
    assert "4 of 43 rows dropped: 3 repeated text(s), among them 1 text(s) given different labels" in task.description
    assert any("4 of 43 rows dropped" in str(w.message) for w in caught)


def test_a_regression_file_keeps_the_first_score_of_a_repeated_text(tmp_path):
    records = [{"text": f"t{i}", "label": i / 7} for i in range(40)] + [{"text": "t5", "label": 99.0}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = get_task(str(jsonl(tmp_path, "d.jsonl", records)))
    scores = {ex.text: ex.label for split in task.splits.values() for ex in split}
    assert len(scores) == 40 and scores["t5"] == pytest.approx(5 / 7)


def test_a_clean_file_warns_nothing_and_says_nothing_dropped(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = get_task(str(jsonl(tmp_path, "d.jsonl", labelled(40))))
    assert task.description == "user data from d.jsonl"
