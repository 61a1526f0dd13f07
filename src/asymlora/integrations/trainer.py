"""A ``transformers.Trainer`` callback for asymlora adapters.

A model prepared with :func:`asymlora.inject` is an ordinary ``nn.Module`` whose trainable tensors are the
adapters' trained factors (and any ``train_modules``, e.g. a classifier head); frozen factors are buffers.
``Trainer`` (and TRL's ``SFTTrainer``, a subclass) trains it unchanged: its optimizer takes the parameters
with ``requires_grad``, so a frozen factor never reaches it.

What the callback adds:

* **small checkpoints.** At the end of ``Trainer.__init__`` it lists every state-dict key that is *not*
  a trainable parameter (the base weights and the frozen factors) in the model's
  ``_keys_to_ignore_on_save``. ``save_pretrained`` then leaves them out, so ``checkpoint-N/model.safetensors``
  holds the trained tensors only (B alone for B-only: kilobytes, not the base model's megabytes). On
  ``Trainer.train(resume_from_checkpoint=...)`` the Trainer loads that file non-strictly onto the model the
  script built (the same base and the same ``inject`` call, hence the same seeded frozen A), sees that the
  missing keys are exactly the ignored ones, and restores optimizer, schedule and RNG states as usual: the
  run continues where it stopped. The list is removed again at the end of training, so a later
  ``save_pretrained`` of the user's saves the whole model as before.
* **adapter folders.** At every Trainer save it writes ``checkpoint-N/asymlora-adapter/`` and at the end of
  training ``output_dir/asymlora-adapter/`` with :func:`asymlora.save_adapter` (frozen factors stored as their
  seed), readable by :func:`asymlora.load_adapter` onto a fresh base model. Only the main process writes.

Mixed precision: with ``bf16=True`` / ``fp16=True`` (TRL's ``SFTConfig`` defaults to ``bf16=True``, also on
CPU) Accelerate replaces the model's forward by an autocast wrapper that stays on ``trainer.model`` after
training, so its logits carry bf16 round-off (≈2e-3 on a tiny Llama) that the adapter folder, loaded in
fp32, does not. The folder is exact: it matches ``trainer.accelerator.unwrap_model(model,
keep_fp32_wrapper=False)`` bit for bit, and the wrapped model under the same autocast.

Not done: under the Trainer's FSDP (sharded parameters) the adapter folder would need the full tensors gathered;
the callback does not gather them and is not tested under FSDP (asymlora's own loop does FSDP2: ``asymlora run
--fsdp``, docs/DISTRIBUTED.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.nn as nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from asymlora.checkpoint import save_adapter
from asymlora.inject import has_adapters

ADAPTER_DIR = "asymlora-adapter"
_SAVED_IGNORE = "_asymlora_saved_keys_to_ignore_on_save"


def frozen_state_keys(model: nn.Module) -> set[str]:
    """The state-dict keys of ``model`` that are not trainable parameters (base weights, frozen factors,
    other buffers): what a Trainer checkpoint of an adapted model need not store."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k for k in model.state_dict() if k not in trainable}


def _unwrapped(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP / DataParallel wrappers
        model = model.module
    return model


class AdapterCheckpointCallback(TrainerCallback):
    """Small Trainer checkpoints plus an asymlora adapter folder at every save and at the end.

    ``trainer = Trainer(model=inject(model, cfg), args=..., callbacks=[AdapterCheckpointCallback()])``.

    ``adapter_dir``: the folder name inside each checkpoint and inside ``output_dir``;
    ``small_checkpoints=False`` keeps the Trainer's full-model checkpoints (the adapter folders are
    written either way); ``extra``: JSON metadata stored in each adapter's config (e.g. the base model's name).
    """

    def __init__(self, adapter_dir: str = ADAPTER_DIR, *, small_checkpoints: bool = True,
                 extra: dict[str, Any] | None = None) -> None:
        if not adapter_dir or os.sep in adapter_dir or adapter_dir in (".", ".."):
            raise ValueError(f"adapter_dir must be a plain folder name, got {adapter_dir!r}")
        self.adapter_dir = adapter_dir
        self.small_checkpoints = small_checkpoints
        self.extra = dict(extra or {})

    # ---- events ---------------------------------------------------------------------------------
    def on_init_end(self, args, state, control, model=None, **kwargs):
        model = self._require(model)
        if self.small_checkpoints:
            if not hasattr(model, _SAVED_IGNORE):
                setattr(model, _SAVED_IGNORE, model._keys_to_ignore_on_save)
            model._keys_to_ignore_on_save = frozen_state_keys(model)
        return control

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            self.write(model, folder / self.adapter_dir, state)
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        model = self._require(model)
        if state.is_world_process_zero:
            self.write(model, Path(args.output_dir) / self.adapter_dir, state)
        if hasattr(model, _SAVED_IGNORE):
            model._keys_to_ignore_on_save = getattr(model, _SAVED_IGNORE)
            delattr(model, _SAVED_IGNORE)
        return control

    # ---- helpers --------------------------------------------------------------------------------
    def write(self, model: nn.Module | None, folder: Path, state) -> Path:
        """Write the adapter of ``model`` (unwrapped) to ``folder``, with the Trainer's step in its metadata."""
        model = self._require(model)
        return save_adapter(model, folder, extra={**self.extra, "trainer_global_step": int(state.global_step)})

    @staticmethod
    def _require(model: nn.Module | None) -> nn.Module:
        if model is None:
            raise ValueError("AdapterCheckpointCallback needs the Trainer's model (pass it as Trainer(model=...))")
        model = _unwrapped(model)
        if not has_adapters(model):
            raise ValueError("AdapterCheckpointCallback: the model has no asymlora adapters; "
                             "call asymlora.inject(model, AdapterConfig(...)) before building the Trainer")
        return model
