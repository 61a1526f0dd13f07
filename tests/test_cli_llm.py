"""``asymlora eval mmlu`` and ``asymlora generate`` end to end on a tiny Llama folder (real MMLU questions)."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_llama_folder

import asymlora
from asymlora.cli import main


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_llama_folder(tmp_path_factory.mktemp("tiny-llama"))


def test_eval_mmlu_prints_the_table_and_writes_records(folder, tmp_path, capsys):
    out = tmp_path / "mmlu.json"
    assert main(["eval", "mmlu", "--model", str(folder), "--subjects", "virology,philosophy", "--per-subject", "3",
                 "--scorer", "both", "--batch-size", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "6 questions (3 per subject, seed 0)" in text and "questions/s" in text
    assert "Humanities" in text and "cloze_norm" in text
    data = json.loads(out.read_text())
    assert data["questions"] == 6 and len(data["records"]) == 6
    assert set(data["summary"]) == {"letter", "cloze", "cloze_norm"}
    rec = data["records"][0]
    assert {"subject", "index", "answer", "letter", "cloze", "cloze_norm"} <= set(rec)
    assert rec["letter"]["choice"] in "ABCD" and len(rec["letter"]["logprobs"]) == 4
    assert data["environment"]["versions"]["torch"] and data["config"]["per_subject"] == 3


def test_eval_with_an_adapter_and_bad_input(folder, tmp_path, capsys):
    from asymlora.models.causal_lm import load_causal_lm

    model, _ = load_causal_lm(folder, tokenizer=False)
    model = asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=2, targets=["q_proj", "v_proj"]))
    asymlora.export_peft(model, tmp_path / "peft")
    assert main(["eval", "mmlu", "--model", str(folder), "--adapter", str(tmp_path / "peft"), "--subjects",
                 "virology", "--per-subject", "1", "--scorer", "letter"]) == 0
    assert "letter" in capsys.readouterr().out
    assert main(["eval", "mmlu", "--model", str(folder), "--subjects", "alchemy"]) == 2
    assert "unknown subject(s) alchemy" in capsys.readouterr().err
    assert main(["eval", "mmlu", "--model", str(tmp_path / "nowhere")]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_generate_streams_tokens(folder, capsys):
    assert main(["generate", "--model", str(folder), "--max-new-tokens", "4", "--raw", "hello world"]) == 0
    assert capsys.readouterr().out.strip()  # four tokens of a random model: words of its vocabulary
    assert main(["generate", "--model", str(folder), "--max-new-tokens", "0", "x"]) == 2
