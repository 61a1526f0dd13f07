#!/usr/bin/env python
"""B-only adapter on SmolLM2-135M-Instruct, trained by an ordinary TRL ``SFTTrainer`` script (instruction data).

As with the Trainer example, asymlora adds three lines: ``asymlora.inject``, the ``AdapterCheckpointCallback``
and ``asymlora.load_adapter``. The data are the project's pinned BIG-bench ``natural_instructions`` records
(task ``natural-instructions``, see docs/DATA.md) in TRL's conversational prompt–completion form, so the loss
is on the response tokens only (TRL's ``completion_only_loss``); the model is the project's ``smollm2``.

    python examples/sft_instructions.py --out runs/example-sft

What it does: B-only r=32 on the attention q and v projections (the paper's instruction-tuning setting), fp32
(``bf16=False``: TRL's default bf16 autocast would stay on the model after training, see docs/INTEGRATIONS.md),
``--steps`` optimizer steps; the validation loss before and after; then the final adapter folder reloaded onto a
freshly loaded SmolLM2 must give the trained model's logits exactly. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import datasets
import torch
import trl

import asymlora
from asymlora.data.registry import get_task
from asymlora.integrations import ADAPTER_DIR, AdapterCheckpointCallback
from asymlora.models.causal_lm import load_causal_lm


def conversational(records) -> datasets.Dataset:
    """TRL's prompt–completion rows: the instruction (and input, when there is one) as the user turn."""
    return datasets.Dataset.from_list([
        {"prompt": [{"role": "user", "content": f"{r.instruction}\n\n{r.input}" if r.input else r.instruction}],
         "completion": [{"role": "assistant", "content": r.response}]} for r in records])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/example-sft"))
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--val-examples", type=int, default=64)
    p.add_argument("--save-steps", type=int, default=20, help="a Trainer checkpoint every N steps")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    task = get_task("natural-instructions")
    train = conversational(task.part("train"))
    val = conversational(task.part("validation")[:args.val_examples])
    model, tokenizer = load_causal_lm("smollm2")
    model = asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=args.rank, targets=("q_proj", "v_proj"),
                                                                 seed=args.seed))
    config = trl.SFTConfig(str(args.out), max_steps=args.steps, learning_rate=args.lr, per_device_train_batch_size=8,
                           per_device_eval_batch_size=8, max_length=256, save_steps=args.save_steps, warmup_steps=2, seed=args.seed,
                           bf16=False, gradient_checkpointing=False, report_to="none", use_cpu=True, logging_steps=5,
                           disable_tqdm=True)
    trainer = trl.SFTTrainer(model=model, args=config, train_dataset=train, eval_dataset=val,
                             processing_class=tokenizer, callbacks=[AdapterCheckpointCallback()])
    before = trainer.evaluate().get("eval_loss")
    if before is None:  # TRL drops examples whose response is cut off entirely at max_length
        raise SystemExit("no validation example fits in 256 tokens with its response; raise --val-examples")
    started = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - started
    after = trainer.evaluate()["eval_loss"]

    ids = tokenizer("Name three primary colours.", return_tensors="pt")["input_ids"]
    fresh = asymlora.load_adapter(load_causal_lm("smollm2")[0], args.out / ADAPTER_DIR).eval()
    model.eval()
    with torch.no_grad():
        same = torch.equal(fresh(input_ids=ids).logits, model(input_ids=ids).logits)
    tokens = max((int(float(r["num_tokens"])) for r in trainer.state.log_history if "num_tokens" in r), default=0)
    print(json.dumps({
        "val_loss_before": round(before, 4), "val_loss_after": round(after, 4), "val_examples": len(val),
        "steps": trainer.state.global_step, "train_seconds": round(train_s, 1),
        "trainable_parameters": asymlora.trainable_parameters(model), "reloaded_logits_equal": same,
        "adapter_folder_bytes": sum(f.stat().st_size for f in (args.out / ADAPTER_DIR).rglob("*") if f.is_file()),
        "train_tokens": tokens, "train_tokens_per_s": round(tokens / train_s, 1)}))


if __name__ == "__main__":
    main()
