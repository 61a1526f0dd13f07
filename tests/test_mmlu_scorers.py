"""The MMLU scorers on a tiny Llama whose next-token logits are set by hand (a bigram table)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from asymlora.data.mmlu import MMLUQuestion
from asymlora.evaluation import mmlu as ev
from asymlora.evaluation.multiple_choice import score_choices


class WordTokenizer:
    """Words with their leading space are tokens (like BPE's " A"), newlines too; ids in first-seen order."""

    pad_token_id = 0

    def __init__(self, texts):
        self.vocab = {"<pad>": 0}
        for t in texts:
            for w in self.split(t):
                self.vocab.setdefault(w, len(self.vocab))

    @staticmethod
    def split(text):
        return re.findall(r" ?[^\s]+|\n", text)

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [self.vocab[w] for w in self.split(text)]}


def bigram_llama(vocab_size, table):
    """A LlamaForCausalLM whose logits for the token after x are exactly ``table[x]`` (attention and MLP
    outputs zeroed, embeddings ±√H one-hot so that RMSNorm leaves them alone, lm_head = table / √H)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    h = vocab_size + vocab_size % 2  # rotary embeddings need an even head size
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=h, intermediate_size=8, num_hidden_layers=2,
                      num_attention_heads=1, num_key_value_heads=1, head_dim=h, max_position_embeddings=512,
                      rms_norm_eps=0.0, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(vocab_size, h) * math.sqrt(h))
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, :vocab_size] = table.T / math.sqrt(h)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return model


QUESTIONS = [
    MMLUQuestion(7, "virology", "Which is right?", ("Paris", "Rome is", "Oslo", "Bern"), "B"),
    MMLUQuestion(9, "anatomy", " Pick one. ", ("Oslo", "Paris", "Bern", "Rome is"), "A"),
]
SHORT = MMLUQuestion(11, "virology", "Short?", ("Oslo", "Bern", "Paris", "Rome is"), "C")


@pytest.fixture
def setup():
    prompts = [ev.mmlu_prompt(q) for q in QUESTIONS + [SHORT]]
    tok = WordTokenizer(prompts + [" " + c for q in QUESTIONS for c in q.choices] + [" A B C D"])
    v = tok.vocab
    table = torch.zeros(len(v), len(v))  # table[x, y]: logit of y after x
    table[v["Answer:"], v[" B"]] = 2.0
    table[v["Answer:"], v[" D"]] = 1.0
    table[v["Answer:"], v[" Rome"]] = 3.0
    table[v[" Rome"], v[" is"]] = 1.5
    table[v["Answer:"], v[" Oslo"]] = 0.5
    return tok, bigram_llama(len(v), table), len(v)


def test_prompt_is_exact():
    assert ev.mmlu_prompt(QUESTIONS[1]) == (
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
        "Pick one.\nA. Oslo\nB. Paris\nC. Bern\nD. Rome is\nAnswer:")


def test_scorers_match_hand_computation(setup):
    tok, model, V = setup
    recs = ev.score_mmlu(model, tok, QUESTIONS, batch_size=2)
    z = math.log(math.exp(2) + math.exp(1) + math.exp(3) + math.exp(0.5) + (V - 4))  # after "Answer:"
    z_rome = math.log(math.exp(1.5) + V - 1)  # after " Rome"
    r = recs[0]
    assert (r["subject"], r["index"], r["answer"]) == ("virology", 7, "B")
    assert r["letter"]["logprobs"] == pytest.approx([-z, 2 - z, -z, 1 - z], abs=1e-4)
    assert r["letter"]["choice"] == "B"
    # cloze: " Paris" 1 token, " Rome is" 2 tokens, " Oslo", " Bern"
    cloze = [-z, 3 - z + 1.5 - z_rome, 0.5 - z, -z]
    assert r["cloze"]["logprobs"] == pytest.approx(cloze, abs=1e-4)
    assert r["cloze"]["choice"] == "B"
    nbytes = [6, 8, 5, 5]
    assert r["cloze_norm"]["logprobs"] == pytest.approx([c / n for c, n in zip(cloze, nbytes)], abs=1e-4)
    assert recs[1]["cloze"]["choice"] == "D" and recs[1]["letter"]["choice"] == "B"


def test_batched_equals_unbatched_and_cache_equals_full(setup):
    tok, _, V = setup
    torch.manual_seed(3)
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    model = LlamaForCausalLM(cfg).eval()  # random weights: attention matters, padding must not
    qs = QUESTIONS + [SHORT]
    one = ev.score_mmlu(model, tok, qs, batch_size=1)
    many = ev.score_mmlu(model, tok, qs, batch_size=3)
    full = ev.score_mmlu(model, tok, qs, batch_size=3, share_prefix=False)
    for a, b, c in zip(one, many, full):
        for s in ev.SCORERS:
            assert a[s]["logprobs"] == pytest.approx(b[s]["logprobs"], abs=1e-4)
            assert a[s]["logprobs"] == pytest.approx(c[s]["logprobs"], abs=1e-4)
            assert a[s]["choice"] == b[s]["choice"]


def test_summary_intervals_and_table():
    recs = []
    for i in range(40):
        subject = ("virology", "anatomy", "philosophy", "sociology")[i % 4]
        recs.append({"subject": subject, "index": i, "answer": "A",
                     "letter": {"choice": "A" if i % 8 < 4 else "B", "logprobs": [0, 0, 0, 0]}})
    s = ev.summarise(recs, "letter")
    assert s["n"] == 40 and s["average"]["accuracy"] == 0.5
    assert set(s["categories"]) == {"Other", "Humanities", "Social Sciences"}
    assert s["categories"]["Other"]["n"] == 20 and s["categories"]["Other"]["accuracy"] == 0.5
    assert s["subjects"]["virology"]["accuracy"] == 0.5
    low, high = s["average"]["low"], s["average"]["high"]
    assert 0.3 < low < 0.5 < high < 0.7
    assert s["subject_mean"]["accuracy"] == 0.5
    flat = ev.flat_metrics(s)
    assert flat["letter_accuracy"] == 0.5 and "letter_social_sciences_accuracy" in flat
    table = ev.format_table([s])
    assert "50.00" in table and "STEM" in table and "—" in table  # no STEM subject here
    with pytest.raises(ValueError, match="cloze"):
        ev.summarise(recs, "cloze")


def test_letter_tokens_must_be_single(setup):
    tok, model, _ = setup
    from asymlora.evaluation.multiple_choice import single_token_ids

    assert single_token_ids(tok, [" A", " B"]) == [tok.vocab[" A"], tok.vocab[" B"]]
    with pytest.raises(ValueError, match="is 2 tokens"):
        single_token_ids(tok, [" Rome is"])
    with pytest.raises(ValueError, match="nothing to score"):
        score_choices(model, tok, ["Answer:"])
    with pytest.raises(ValueError, match="unknown scorer"):
        ev.score_mmlu(model, tok, QUESTIONS, scorers=("letters",))
