"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for the training loop, on CPUs (gloo) and GPUs alike.

Why it fits asymlora: FSDP2 shards every parameter on its own (dim 0 over the processes, a ``DTensor``), so frozen
and trained parameters may sit side by side in one module; and a frozen factor is not a parameter at all but a
buffer, replicated on every process like any buffer. PEFT's FSDP1 failure "FlatParameter requires uniform
requires_grad" (one flat parameter per wrapped module, all trained or all frozen) cannot arise.

What the loop does with it (``TrainConfig(fsdp=True)``, ≥ 2 processes):

* :func:`shard_model`: ``fully_shard`` each block whose class the model names in ``_no_split_modules`` (Hugging
  Face's list: ``LlamaDecoderLayer``, ``BertLayer``, …), then the root. Each process keeps 1/N of every weight; a
  block's weights are all-gathered for its forward and backward, and gradients are reduce-scattered (averaged),
  which is DDP's all-reduce-and-average cut into shards: the same step up to float round-off.
* checkpoints hold *full* tensors (:func:`full_tensor`; the optimizer's moments through
  ``torch.distributed.checkpoint.state_dict`` with ``full_state_dict=True``), written by the main process, and are
  cut back into shards on resume (:func:`load_full`): a checkpoint is the same file as DDP's but for the optimizer
  state's keys (parameter names instead of indices).
* :func:`unshard_in_place` at the end: every block is all-gathered once and left whole, so the model holds plain
  full parameters again and the main process alone can save the adapter or run it. (The last gather needs the
  whole model on every process once, as the run's test evaluation does anyway.)

Every function that gathers or scatters is collective: all processes call it, in the same order.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict, set_optimizer_state_dict
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

__all__ = ["shard_model", "is_sharded", "full_tensor", "load_full", "full_optimizer_state", "load_optimizer_state",
           "unshard_in_place", "block_classes"]


def block_classes(model: nn.Module) -> set[str]:
    """The class names ``model`` (or any submodule) lists in ``_no_split_modules``."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return names


def shard_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` and ``fully_shard`` its blocks, then the root (in place; returns the model)."""
    blocks = block_classes(model)
    found = [m for m in model.modules() if type(m).__name__ in blocks and m is not model]
    if not found:
        raise ValueError(f"FSDP needs the model's repeated blocks to shard one by one: {type(model).__name__} lists no "
                         "_no_split_modules (a Hugging Face model does); train it with DDP instead")
    model.to(device)
    for module in found:
        fully_shard(module)
    fully_shard(model)
    return model


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a shard (collective), or ``t`` itself."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def load_full(param: torch.Tensor, value: torch.Tensor) -> None:
    """Copy the whole tensor ``value`` into ``param``, keeping only this process's shard of it when sharded (every
    process holds ``value``, so no communication is needed)."""
    with torch.no_grad():
        if isinstance(param, DTensor):
            value = distribute_tensor(value.to(param.device, param.dtype), param.device_mesh, param.placements,
                                      src_data_rank=None)
        param.copy_(value.to(param.device, param.dtype))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state with whole tensors, on the CPU, keyed by parameter name (collective; the main process
    gets it all, the others an empty dict)."""
    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore :func:`full_optimizer_state` (every process passes the whole dict; each keeps its shards)."""
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))


def unshard_in_place(model: nn.Module) -> nn.Module:
    """All-gather every sharded block once and keep it whole (collective): afterwards ``model``'s parameters are
    plain full tensors and a forward pass communicates no more."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_reshard_after_forward(False)
            module.unshard()
    return model
