"""Shared fixtures: tiny models built in the test (no download)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from asymlora.sources.fetch import REGISTRY_LACKS, SourceUnavailable


def _skip_if_the_registry_lacks_a_source(err: BaseException) -> None:
    """A real-data test whose pinned package the registry does not serve now (removed upstream, or no network)
    cannot run here: skip it, naming the package, instead of failing on something outside the project. Our own
    fetch code says so with SourceUnavailable, or, from a subprocess (a CLI run), with REGISTRY_LACKS in its output."""
    if isinstance(err, SourceUnavailable) or REGISTRY_LACKS in str(err):
        first = next((line for line in str(err).splitlines() if "cannot get" in line), str(err).splitlines()[0])
        pytest.skip(f"{REGISTRY_LACKS}: {first.strip()[:300]}")


def _skipping_missing_sources(item):
    try:
        return (yield)
    except Exception as err:  # noqa: BLE001 - re-raised unless it is a missing registry source
        _skip_if_the_registry_lacks_a_source(err)
        raise


# fixtures (setup) and test bodies (call) alike
pytest_runtest_setup = pytest.hookimpl(wrapper=True)(_skipping_missing_sources)
pytest_runtest_call = pytest.hookimpl(wrapper=True)(_skipping_missing_sources)


class TinyNet(nn.Module):
    """Linear layers of different shapes, a conv, and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.proj = nn.Linear(6 * 4 * 4, 24)
        self.mlp = nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 24))
        self.classifier = nn.Linear(24, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).flatten(1)
        h = self.proj(h)
        h = h + self.mlp(h)
        return self.classifier(h)


@pytest.fixture(autouse=True)
def one_thread():
    """Every test here uses tiny models, which run several times faster on one thread (and a 2-thread
    pool stalls when another process holds a core). Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def tiny_input():
    g = torch.Generator().manual_seed(1)
    return torch.randn(5, 3, 4, 4, generator=g)


def tiny_bert(num_labels: int = 3):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, num_labels=num_labels)
    return BertForSequenceClassification(cfg).eval()


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return GPT2LMHeadModel(cfg).eval()


def randomize_factors(model, seed: int = 7, scale: float = 0.1) -> None:
    """Give every factor random values so that ΔW ≠ 0 (as after training)."""
    import asymlora

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in asymlora.adapted_layers(model):
            for which in "AB":
                t = getattr(layer, f"lora_{which}")
                if layer.is_trainable(which):
                    t.copy_(torch.randn(t.shape, generator=g) * scale)


def tiny_llama_folder(folder):
    """A tiny LlamaForCausalLM (hidden 16, 2 layers) and a word-level tokenizer saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<eos>", "hello", "world", "A", "B", "C", "D", "Answer", ":"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512, eos_token_id=1)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder
