"""Tasks from a user's file, splits, metrics, encoding and the model registry, on tiny local data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from asymlora.data import DataError, Example, Task, dedupe, get_task, split_examples
from asymlora.data.metrics import classification_metrics, regression_metrics


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def csv_rows(n: int, label=lambda i: i % 2) -> str:
    return "text,label\n" + "".join(f"sentence number {i},{label(i)}\n" for i in range(n))


# --- user files: parsing and inference ---------------------------------------------------------------

def test_csv_classification_inferred_with_reproducible_stratified_splits(tmp_path):
    p = write(tmp_path, "d.csv", csv_rows(200, label=lambda i: int(i % 4 == 0)))
    t = get_task(str(p))
    assert t.kind == "classification" and t.label_names == ("0", "1") and t.num_labels == 2
    assert {k: len(v) for k, v in t.splits.items()} == {"train": 160, "validation": 20, "test": 20}
    for split in t.splits.values():  # 25% positives everywhere
        assert sum(ex.label for ex in split) == len(split) // 4
    again = get_task(str(p))
    assert again.splits == t.splits and again.fingerprint() == t.fingerprint()
    other = get_task(str(p), seed=1)
    assert other.splits["test"] != t.splits["test"]
    texts = [ex.text for s in t.splits.values() for ex in s]
    assert sorted(texts) == sorted(f"sentence number {i}" for i in range(200))  # a partition


def test_label_names_and_ids(tmp_path):
    p = write(tmp_path, "d.csv", "text,label\n" + "".join(f"t{i},{['pos', 'neg', 'neu'][i % 3]}\n" for i in range(30)))
    t = get_task(str(p))
    assert t.kind == "classification" and t.label_names == ("neg", "neu", "pos")
    ex = {e.text: e.label for s in t.splits.values() for e in s}
    assert ex["t0"] == 2 and ex["t1"] == 0 and ex["t2"] == 1
    # integer labels sort numerically, so 0..K-1 keep their ids (and 10 comes after 9)
    p = write(tmp_path, "n.csv", "text,label\n" + "".join(f"t{i},{[0, 9, 10][i % 3]}\n" for i in range(30)))
    t = get_task(str(p))
    assert t.label_names == ("0", "9", "10")


def test_kind_inference_and_override(tmp_path):
    floats = write(tmp_path, "f.csv", "text,label\n" + "".join(f"t{i},{i / 7:.3f}\n" for i in range(30)))
    assert get_task(str(floats)).kind == "regression"
    many_ints = write(tmp_path, "m.csv", "text,label\n" + "".join(f"t{i},{i}\n" for i in range(30)))
    assert get_task(str(many_ints)).kind == "regression"  # 30 distinct integers: a score
    few_ints = write(tmp_path, "i.csv", "text,label\n" + "".join(f"t{i},{i % 5}.0\n" for i in range(30)))
    assert get_task(str(few_ints)).kind == "classification"  # "3.0" is an integer
    assert get_task(str(few_ints), task_kind="regression").kind == "regression"
    t = get_task(str(many_ints), task_kind="classification")
    assert t.kind == "classification" and t.num_labels == 30
    reg = get_task(str(floats))
    assert reg.num_labels == 1 and reg.problem_type == "regression" and reg.primary_metric == "pearson"
    assert isinstance(reg.splits["train"][0].label, float)


def test_text_pairs_tsv_and_jsonl(tmp_path):
    tsv = write(tmp_path, "p.tsv", "premise\thypothesis\ty\n" +
                "".join(f'he said "hi {i}\tit is {i}\t{i % 3}\n' for i in range(40)))
    t = get_task(str(tsv), text_column="premise", text_pair_column="hypothesis", label_column="y")
    assert t.text_fields == ("text", "text_pair") and t.num_labels == 3
    ex = t.splits["train"][0]
    assert ex.text.startswith('he said "hi') and ex.text_pair.startswith("it is")  # quotes are text in .tsv
    jl = write(tmp_path, "d.jsonl", "".join(json.dumps({"sentence": f"s {i}", "score": i * 0.25}) + "\n\n"
                                           for i in range(40)))
    t = get_task(str(jl), text_column="sentence", label_column="score")
    assert t.kind == "regression" and sum(len(s) for s in t.splits.values()) == 40


def test_split_column_kept_and_missing_split_carved_from_train(tmp_path):
    rows = [f"t{i},{i % 2},{'train' if i < 80 else 'dev' if i < 90 else 'test'}" for i in range(100)]
    p = write(tmp_path, "s.csv", "text,label,split\n" + "\n".join(rows) + "\n")
    t = get_task(str(p))
    assert {k: len(v) for k, v in t.splits.items()} == {"train": 80, "validation": 10, "test": 10}
    assert [e.text for e in t.splits["test"]] == [f"t{i}" for i in range(90, 100)]
    rows = [f"t{i},{i % 2},{'train' if i < 90 else 'test'}" for i in range(100)]
    p = write(tmp_path, "s2.csv", "text,label,split\n" + "\n".join(rows) + "\n")
    t = get_task(str(p))
    # validation is taken out of the 90 train rows at 0.1 / (0.8 + 0.1) of them
    assert {k: len(v) for k, v in t.splits.items()} == {"train": 80, "validation": 10, "test": 10}
    assert not {e.text for e in t.splits["validation"]} & {e.text for e in t.splits["train"]}


def test_quoted_multiline_csv_field(tmp_path):
    p = write(tmp_path, "q.csv", 'text,label\n"a, quoted\nmulti-line text",1\nplain,0\n' +
              "".join(f"x{i},{i % 2}\n" for i in range(20)))
    t = get_task(str(p))
    texts = {e.text for s in t.splits.values() for e in s}
    assert "a, quoted\nmulti-line text" in texts


# --- user files: malformed input, each error names the line ------------------------------------------

@pytest.mark.parametrize("name,content,kwargs,line,problem", [
    ("a.csv", "sentence,label\nx,1\n", {}, 1, "no column 'text'"),
    ("b.csv", "text,label\nok,1\nbad,1,extra\n", {}, 3, "3 fields, the header has 2"),
    ("c.csv", "text,label\nok,1\n   ,0\n", {}, 3, "empty text"),
    ("d.csv", "text,label\nok,1\nok2,\n", {}, 3, "empty label"),
    ("e.csv", "text,label\na,0.5\nb,1.5\nc,oops\nd,2\n", {}, 4, "'oops' is not a number"),
    ("f.csv", "text,label\na,0.5\nb,high\n", {"task_kind": "regression"}, 3, "not a finite number"),
    ("g.csv", 'text,label\nok,1\n"unclosed,0\nmore,1\n', {}, 3, "malformed CSV"),
    ("h.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0\n', {}, 2, "bad JSON"),
    ("i.jsonl", '{"text": "a", "label": 1}\n\n["text", 0]\n', {}, 3, "expected a JSON object"),
    ("j.jsonl", '{"text": "a", "label": 1}\n{"txt": "b", "label": 0}\n', {}, 2, "no field 'text'"),
    ("k.jsonl", '{"text": "a", "label": 1}\n{"text": 7, "label": 0}\n', {}, 2, "not text"),
    ("l.csv", "text,label,split\na,1,train\nb,0,holdout\n", {}, 3, "split 'holdout'"),
    ("m.csv", "text,label,split\na,1,train\nb,0,train\n", {"text_pair_column": "other"}, 1, "no column 'other'"),
    ("n.csv", b"text,label\nok,1\ncaf\xe9,0\n", {}, 3, "not UTF-8"),
    ("o.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": null}\n', {}, 2, "empty label"),
    ("p.jsonl", '{"text": "a", "label": 1, "split": "train"}\n{"text": "b", "label": 0}\n', {}, 2,
     "no 'split' value"),
])
def test_malformed_file_error_names_line_and_problem(tmp_path, name, content, kwargs, line, problem):
    p = write(tmp_path, name, content)
    with pytest.raises(DataError) as err:
        get_task(str(p), **kwargs)
    assert err.value.line == line, str(err.value)
    assert problem in str(err.value)
    assert str(p) in str(err.value) and f"line {line}:" in str(err.value)


@pytest.mark.parametrize("name,content,problem", [
    ("empty.csv", "", "empty"),
    ("header.csv", "text,label\n", "no data rows"),
    ("one.csv", "text,label\na,1\nb,1\n", "only one distinct label"),
    ("d.json", "{}", "unsupported file type"),
])
def test_file_level_errors(tmp_path, name, content, problem):
    with pytest.raises(DataError, match=problem):
        get_task(str(write(tmp_path, name, content)))


def test_missing_file_and_unknown_task(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        get_task(str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="unknown task 'nonsense'"):
        get_task("nonsense")
    with pytest.raises(DataError, match="task 'sentiment' takes no option label_column; it takes none"):
        get_task("sentiment", label_column="y")
    with pytest.raises(DataError, match="a data file takes no option per_subject; its options are text_column"):
        get_task(str(tmp_path / "x.csv"), per_subject="3")


def test_built_in_task_options_and_other_file_kinds_reach_their_loaders(tmp_path, monkeypatch):
    from asymlora.data import registry

    seen = {}

    def loader(*, size: str = "10"):
        seen["size"] = size
        return "task"

    monkeypatch.setitem(registry._REGISTERED, "sized", loader)
    assert get_task("sized", size="3") == "task" and seen == {"size": "3"}
    monkeypatch.setitem(registry.FILE_KINDS, "instructions", ("json", "dumps"))  # a reader of (path, **options)
    f = tmp_path / "i.jsonl"
    f.write_text("{}\n")
    assert get_task(str(f), task_kind="instructions") == json.dumps(str(f))


# --- splitting and de-duplication -------------------------------------------------------------------

def exs(n: int, classes: int = 2) -> list[Example]:
    return [Example(f"text {i}", i % classes) for i in range(n)]


def test_split_sizes_partition_and_order_independence():
    data = exs(1003, classes=3)
    s = split_examples(data, (0.8, 0.1, 0.1), seed=3)
    assert [len(s[k]) for k in ("train", "validation", "test")] == [803, 100, 100]
    assert sorted(e.text for v in s.values() for e in v) == sorted(e.text for e in data)
    assert s["test"] == sorted(s["test"], key=data.index)  # original order kept within a split
    shuffled = split_examples(data[::-1], (0.8, 0.1, 0.1), seed=3)  # keys hash the text, not the position
    assert {e.text for e in shuffled["test"]} == {e.text for e in s["test"]}
    counts = np.bincount([e.label for e in s["test"]], minlength=3)
    assert counts.max() - counts.min() <= 1  # stratified
    unstrat = split_examples(data, (0.5, 0.5, 0.0), stratify=False)
    assert len(unstrat["test"]) == 0 and len(unstrat["validation"]) == 502
    with pytest.raises(ValueError):
        split_examples(data, (0.8, 0.3, 0.1))


def test_dedupe_keeps_first_and_drops_conflicts():
    data = [Example("a", 0, uid="1"), Example("b", 1), Example("a", 0, uid="3"), Example("c", 0), Example("c", 1)]
    kept, repeats, conflicts = dedupe(data)
    assert [(e.text, e.uid) for e in kept] == [("a", "1"), ("b", "")]
    assert (repeats, conflicts) == (2, 1)
    kept, _, conflicts = dedupe(data, drop_conflicts=False)
    assert [e.text for e in kept] == ["a", "b", "c"] and conflicts == 0


# --- metrics against hand-computed values -----------------------------------------------------------

def test_classification_metrics_by_hand():
    gold = [1, 1, 1, 0, 0, 0, 0, 1]
    pred = [1, 1, 0, 0, 0, 1, 0, 1]
    m = classification_metrics(pred, gold)
    tp, tn, fp, fn = 3, 3, 1, 1
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert m["mcc"] == pytest.approx(mcc)
    # F1 of class 0 when it is the positive one (spam-style tasks choose it)
    assert classification_metrics(pred, gold, positive_label=0)["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    logits = np.eye(2)[pred] * 3.0 - 1.0  # (N, 2) scores arg-max to pred
    assert classification_metrics(torch.tensor(logits), gold) == m


def test_multiclass_and_constant_predictions():
    gold = [0, 1, 2, 2]
    pred = [0, 2, 2, 2]
    m = classification_metrics(pred, gold, num_labels=3)
    # per class F1: c0 = 1, c1 = 0, c2 = 2*2/(2*2+1+0) = 0.8
    assert m["macro_f1"] == pytest.approx((1 + 0 + 0.8) / 3) and m["accuracy"] == 0.75
    assert classification_metrics([0, 0, 0], [0, 1, 0])["mcc"] == 0.0


def test_regression_metrics_by_hand():
    gold = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.0, 3.0, 2.0, 5.0])
    m = regression_metrics(pred[:, None], gold)
    x, y = pred - pred.mean(), gold - gold.mean()
    assert m["pearson"] == pytest.approx((x @ y) / math.sqrt((x @ x) * (y @ y)))
    # ranks pred: 1,3,2,4 vs 1,2,3,4 -> d^2 = 0+1+1+0 -> 1 - 6*2/(4*15) = 0.8
    assert m["spearman"] == pytest.approx(0.8)
    assert m["mse"] == pytest.approx((0 + 1 + 1 + 1) / 4)
    assert math.isnan(regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"])


def test_task_metrics_follow_its_kind():
    t = Task("t", "classification", {"train": [], "validation": [], "test": []}, label_names=("ham", "spam"),
             primary_metric="f1")
    assert t.metrics([1, 0, 1], [1, 1, 1])["f1"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="at least two"):
        Task("t", "classification", {"train": [], "validation": [], "test": []}, label_names=("x",))
    with pytest.raises(ValueError, match="metric_fn"):
        Task("t", "generation", {"train": [], "validation": [], "test": []})
    gen = Task("g", "generation", {"train": [], "validation": [], "test": []},
               metric_fn=lambda p, y: {"exact": float(np.mean(np.array(p) == np.array(y)))}, primary_metric="exact")
    assert gen.metrics(["a", "b"], ["a", "c"]) == {"exact": 0.5}


# --- GLUE (online path; the download is replaced) -----------------------------------------------------

def test_glue_needs_datasets(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_datasets(name, *a, **k):
        if name == "datasets":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(DataError, match="pip install datasets"):
        get_task("glue/sst2")
    with pytest.raises(DataError, match="unknown GLUE task"):
        get_task("glue/imdb")


def test_glue_conversion(monkeypatch):
    from asymlora.data import glue
    fake = {"train": [{"sentence1": f"a{i}", "sentence2": f"b{i}", "label": i % 2, "idx": i} for i in range(50)],
            "validation": [{"sentence1": "c", "sentence2": "d", "label": 1, "idx": 0}]}
    monkeypatch.setattr(glue, "_load_dataset", lambda name: fake)
    t = get_task("glue/mrpc")
    assert t.text_fields == ("text", "text_pair") and t.label_names == ("not_equivalent", "equivalent")
    assert [len(t.splits[k]) for k in ("train", "validation", "test")] == [45, 5, 1]
    assert t.splits["test"][0] == Example("c", 1, "d", uid="validation:0")


# --- encoding ---------------------------------------------------------------------------------------

@pytest.fixture
def tokenizer(tmp_path):
    from transformers import BertTokenizerFast
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "the", "is", "very"]
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast.from_pretrained(str(tmp_path / "tok"))
    assert len(tok) == len(vocab)
    return tok


def test_encode_single_and_pair(tokenizer):
    from asymlora.data import encode_examples
    data = [Example("the film is good", 1), Example("bad", 0)]
    enc = encode_examples(data, tokenizer, max_length=16)
    assert enc["input_ids"].shape == (2, 6)  # [CLS] the film is good [SEP], padded to the longest
    assert enc["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0]
    assert enc["labels"].dtype == torch.long and enc["labels"].tolist() == [1, 0]
    enc = encode_examples(data, tokenizer, max_length=4)
    assert enc["input_ids"].shape == (2, 4)  # truncated
    pairs = [Example("good", 1.5, "very good"), Example("bad", -2.0, "the film")]
    enc = encode_examples(pairs, tokenizer, kind="regression")
    assert enc["labels"].dtype == torch.float32
    assert enc["token_type_ids"][0].tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="text pair"):
        encode_examples([Example("good", 1, "x"), Example("bad", 0)], tokenizer)


def test_encode_task_split_and_dataset(tokenizer):
    from asymlora.data import EncodedDataset, encode
    t = Task("t", "classification", {"train": [Example("good", 1), Example("bad", 0)], "validation": [],
                                     "test": []}, label_names=("neg", "pos"))
    ds = EncodedDataset(encode(t, "train", tokenizer))
    assert len(ds) == 2 and ds[1]["labels"].item() == 0 and set(ds[0]) >= {"input_ids", "attention_mask"}
    ragged = encode(t, "train", tokenizer, padding=False)
    assert ragged["input_ids"] == [[2, 5, 3], [2, 6, 3]] and ragged["labels"] == [1, 0]


# --- models (tiny random ones, nothing downloaded) ---------------------------------------------------

def _tiny(config_cls, **kw):
    args = dict(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    return config_cls(**{**args, **kw})


def test_default_targets_by_architecture():
    from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

    from asymlora.models import ModelError, default_targets
    bert, mpnet = BertModel(_tiny(BertConfig)), MPNetModel(_tiny(MPNetConfig))
    assert default_targets(bert) == ("query", "value")
    assert default_targets(mpnet) == ("q", "v")
    names = {n.rsplit(".", 1)[-1] for n, _ in mpnet.named_modules()}
    assert {"q", "v"} <= names

    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj = (torch.nn.Linear(4, 4) for _ in range(3))

    assert default_targets(Custom()) == ("q_proj", "v_proj")
    class Mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

    with pytest.raises(ModelError, match="linear layers are called: fc"):
        default_targets(Mlp())


def test_load_model_from_local_folder(tmp_path, tokenizer):
    from transformers import BertConfig, BertModel

    from asymlora.models import ModelError, load_model
    folder = tmp_path / "tiny-bert"
    BertModel(_tiny(BertConfig, vocab_size=len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    task = Task("t", "classification", {"train": [], "validation": [], "test": []}, label_names=("a", "b", "c"))
    from huggingface_hub import is_offline_mode
    before = is_offline_mode()
    model, tok = load_model(str(folder), task, seed=0)
    assert is_offline_mode() == before  # offline only for the duration of the local load
    assert model.config.num_labels == 3 and model.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert model.config.problem_type == "single_label_classification"
    again, _ = load_model(str(folder), task, seed=0)
    assert torch.equal(model.classifier.weight, again.classifier.weight)  # the head's init is seeded
    reg, _ = load_model(str(folder), kind="regression")
    assert reg.config.num_labels == 1 and reg.config.problem_type == "regression"
    batch = tok(["good film"], return_tensors="pt")
    assert model(**batch).logits.shape == (1, 3)
    with pytest.raises(ModelError, match="config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelError, match="head"):
        load_model(str(folder), kind="generation")


def test_offline_mode_reaches_an_already_imported_huggingface_hub():
    """huggingface_hub reads HF_HUB_OFFLINE once, at import; a local load must still be offline (issue 12)."""
    from huggingface_hub import is_offline_mode

    from asymlora.models.registry import _hub_offline
    before = is_offline_mode()
    with _hub_offline():
        assert is_offline_mode() is True
        with _hub_offline():
            assert is_offline_mode() is True
        assert is_offline_mode() is True
    assert is_offline_mode() == before
