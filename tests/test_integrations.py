"""asymlora under the real ``transformers.Trainer`` and ``trl.SFTTrainer``: an injected model trains unchanged,
the callback keeps checkpoints small and writes adapter folders that ``load_adapter`` reads, and resuming a
Trainer run from its checkpoint ends with the adapter of an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402
from toy import instruction_records, lm_tokenizer, tiny_llama, toy_examples, toy_model, toy_tokenizer  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

import asymlora  # noqa: E402
from asymlora.integrations import ADAPTER_DIR, AdapterCheckpointCallback, frozen_state_keys  # noqa: E402

B_ONLY = asymlora.AdapterConfig.preset("b-only", rank=4, targets=("query", "value"), train_modules=("classifier",))


class Encoded(torch.utils.data.Dataset):
    """The toy sentiment sentences, tokenised to a fixed length (Trainer's default collator stacks them)."""

    def __init__(self, n: int = 64) -> None:
        tok = toy_tokenizer()
        self.rows = [dict(tok(e.text, padding="max_length", max_length=12, truncation=True), labels=e.label)
                     for e in toy_examples(n, 0)]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return {k: torch.tensor(v) for k, v in self.rows[i].items()}


def bert_trainer(out, **kw) -> Trainer:
    model = asymlora.inject(toy_model(), B_ONLY)
    args = TrainingArguments(str(out), max_steps=6, save_steps=3, per_device_train_batch_size=8, learning_rate=1e-2,
                             report_to="none", use_cpu=True, logging_steps=1, seed=0, disable_tqdm=True, **kw)
    return Trainer(model=model, args=args, train_dataset=Encoded(), callbacks=[AdapterCheckpointCallback()])


def logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits



@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Trainer initialises Accelerate's process-wide state with its own settings; reset it after each test so
    that later tests can build their own Accelerator."""
    from accelerate.state import AcceleratorState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)

def test_trainer_writes_small_checkpoints_and_adapter_folders(tmp_path):
    trainer = bert_trainer(tmp_path)
    model = trainer.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_B" in n or n.startswith("classifier.")) for n in trainable)
    trainer.train()
    for step in (3, 6):
        ckpt = tmp_path / f"checkpoint-{step}"
        saved = load_file(ckpt / "model.safetensors")
        assert set(saved) == trainable  # base weights and the frozen A are not in the checkpoint
        meta = json.loads((ckpt / ADAPTER_DIR / "adapter_config.json").read_text())
        assert meta["extra"]["trainer_global_step"] == step
    full = sum(t.numel() for t in model.state_dict().values())
    assert sum(t.numel() for t in saved.values()) < 0.05 * full
    # the final folder loads onto a fresh base model with the trained model's outputs
    batch = Encoded(8)[0]
    batch = {k: v[None] for k, v in batch.items()}
    fresh = asymlora.load_adapter(toy_model(), tmp_path / ADAPTER_DIR)
    torch.testing.assert_close(logits(fresh, batch), logits(model, batch), rtol=0, atol=0)
    assert not torch.equal(logits(fresh, batch), logits(toy_model(), batch))  # it did train
    # the frozen A was stored as its seed only
    folder = json.loads((tmp_path / ADAPTER_DIR / "adapter_config.json").read_text())
    assert all(not g["A"]["stored"] and g["B"]["stored"] for g in folder["layer_groups"])
    # after training, save_pretrained saves the whole model again
    assert not model._keys_to_ignore_on_save
    assert frozen_state_keys(model) and "classifier.weight" not in frozen_state_keys(model)


def test_trainer_resume_from_checkpoint_continues_the_adapter(tmp_path):
    ref = bert_trainer(tmp_path / "ref")
    ref.train()  # saves checkpoint-3 and checkpoint-6: a fresh process resumes from checkpoint-3
    resumed = bert_trainer(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "ref" / "checkpoint-3"))
    assert resumed.state.global_step == 6
    final = (tmp_path / "ref" / ADAPTER_DIR / "adapter.safetensors").read_bytes()
    assert (tmp_path / "resumed" / ADAPTER_DIR / "adapter.safetensors").read_bytes() == final
    losses = [r["loss"] for r in resumed.state.log_history if "loss" in r]  # steps 1-3 come from the checkpoint
    assert len(losses) == 6 and losses == [r["loss"] for r in ref.state.log_history if "loss" in r]

def test_callback_refuses_a_model_without_adapters(tmp_path):
    args = TrainingArguments(str(tmp_path), max_steps=1, report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="no asymlora adapters"):
        Trainer(model=toy_model(), args=args, train_dataset=Encoded(8), callbacks=[AdapterCheckpointCallback()])
    with pytest.raises(ValueError, match="plain folder name"):
        AdapterCheckpointCallback("a/b")


def test_sft_trainer_trains_an_injected_llama(tmp_path):
    """TRL's SFTConfig defaults to bf16=True (also on CPU): Accelerate then wraps the model's forward in bf16
    autocast, and the wrapper stays on ``trainer.model`` after training. The adapter folder is exact: it equals
    the trained model in fp32 (wrapper removed) and, under the same autocast, the wrapped model itself."""
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    rows = [{"prompt": [{"role": "user", "content": r.instruction}],
             "completion": [{"role": "assistant", "content": r.response}]} for r in instruction_records()]
    model = asymlora.inject(tiny_llama(0), asymlora.AdapterConfig.preset("b-only", rank=4, targets="all-linear"))
    base = {k: v.clone() for k, v in model.state_dict().items() if "lora_B" not in k}
    args = trl.SFTConfig(str(tmp_path), max_steps=8, save_steps=4, per_device_train_batch_size=4, learning_rate=2e-2,
                         report_to="none", use_cpu=True, logging_steps=1, seed=0, disable_tqdm=True)
    assert args.bf16 and args.gradient_checkpointing  # TRL's defaults, which this test pins
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                             processing_class=lm_tokenizer(), callbacks=[AdapterCheckpointCallback()])
    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 8 and sum(losses[-3:]) < sum(losses[:3])
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())  # base weights and frozen A untouched
    assert all(after[k].abs().sum() > 0 for k in after if "lora_B" in k)  # every B trained
    assert set(load_file(tmp_path / "checkpoint-4" / "model.safetensors")) == {k for k in after if "lora_B" in k}
    ids = torch.tensor([[2, 5, 6, 8, 4, 3]])
    fresh = asymlora.load_adapter(tiny_llama(0), tmp_path / ADAPTER_DIR).eval()
    model.eval()
    with torch.no_grad():
        wrapped = model(ids).logits  # still in Accelerate's bf16 autocast
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.testing.assert_close(fresh(ids).logits.float(), wrapped, rtol=0, atol=0)
        fp32 = fresh(ids).logits
        assert (fp32 - wrapped).abs().max() > 1e-4  # the bf16 round-off that looked like a wrong adapter
        unwrapped = trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
        torch.testing.assert_close(unwrapped(ids).logits, fp32, rtol=0, atol=0)
