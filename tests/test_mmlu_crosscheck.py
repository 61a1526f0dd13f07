"""The MMLU letter scorer agrees with lm-evaluation-harness (real SmolLM2, base and a B-only PEFT adapter)."""

from __future__ import annotations

import pytest

from asymlora.data.mmlu import load_mmlu, subset
from asymlora.evaluation.crosscheck import compare, run_crosscheck, write_lm_eval_tasks


def test_task_files_and_comparison(tmp_path):
    qs = subset([q for q in load_mmlu() if q.subject in ("marketing", "virology")], 2)
    names = write_lm_eval_tasks(qs, tmp_path)
    assert names == ["asymlora_mmlu_marketing", "asymlora_mmlu_virology"]  # file order
    yaml = (tmp_path / "asymlora_mmlu_virology.yaml").read_text()
    assert "question.strip()" in yaml and '"The following are multiple choice questions (with answers) about virology.\\n\\n"' in yaml
    ours = [{"index": q.index, "subject": q.subject, "letter": {"choice": "A", "logprobs": [-1.0, -2.0, -3.0, -4.0]}}
            for q in qs]
    theirs = {q.index: [-1.0, -2.0, -3.0, -4.0] for q in qs}
    theirs[qs[0].index] = [-2.5, -2.0, -3.0, -4.0]
    r = compare(ours, theirs)
    assert (r["questions"], r["agree"], r["agreement"]) == (4, 3, 0.75)
    assert r["max_abs_logprob_diff"] == 1.5 and r["disagreements"][0]["lm_eval"] == "B"


@pytest.mark.slow
def test_letter_predictions_agree_with_lm_eval(tmp_path):
    pytest.importorskip("lm_eval")
    from asymlora.models.smollm2 import smollm2_folder

    qs = subset([q for q in load_mmlu() if q.subject in ("marketing", "sociology")], 2)
    report = run_crosscheck(smollm2_folder(), qs, tmp_path, batch_size=4)
    for label in ("base", "b-only-peft"):
        assert report[label]["agreement"] == 1.0, report[label]["disagreements"]
        assert report[label]["max_abs_logprob_diff"] < 1e-3
    assert report["b-only-peft"]["questions"] == 4
