"""The one place the loop makes its :class:`accelerate.Accelerator`, and what it checks about how it was launched.

The processes of a run are started by ``torchrun`` or ``accelerate launch``, never by asymlora. Two facts of
Accelerate (1.16) decide what a process then sees on a machine without GPUs:

* Under ``torchrun`` (and ``accelerate launch --multi_gpu``, which runs torchrun), ``Accelerator()`` finds
  ``LOCAL_RANK`` but no accelerator and falls back to ``DistributedType.NO``: every process trains alone, each
  believes it is the main one. Only ``Accelerator(cpu=True)`` joins the processes in one gloo process group
  (``DistributedType.MULTI_CPU``). :func:`make_accelerator` therefore passes ``cpu=True`` whenever
  ``torch.accelerator.is_available()`` is false; with a GPU nothing changes.
* ``accelerate launch --num_processes N`` *without* ``--multi_gpu`` on such a machine (or on one GPU) uses
  Accelerate's "simple launcher", which starts **one** process whatever N says (it sets ``MASTER_ADDR`` /
  ``MASTER_PORT`` but no ``WORLD_SIZE``). That process trains correctly, alone; :func:`check_launch` warns with
  the command that starts N processes (``--multi_gpu``; multi-CPU through MPI needs ``--mpirun_hostfile``).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

import torch
from accelerate import Accelerator

__all__ = ["make_accelerator", "check_launch", "SingleProcessLaunchWarning"]

WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class SingleProcessLaunchWarning(UserWarning):
    """``accelerate launch`` was asked for several processes but started one (see the module doc)."""


def check_launch(env: Mapping[str, str] | None = None) -> str | None:
    """The warning text if ``env`` (default ``os.environ``) is that of a process that Accelerate's simple launcher
    started for several processes or machines (``MASTER_ADDR`` set, Accelerate's launch variables set, and no world
    size of torchrun or MPI), after warning it with :class:`SingleProcessLaunchWarning`; None otherwise."""
    env = os.environ if env is None else env
    launched_by_accelerate = "ACCELERATE_DYNAMO_BACKEND" in env and "ACCELERATE_MIXED_PRECISION" in env
    if not (launched_by_accelerate and "MASTER_ADDR" in env) or any(v in env for v in WORLD_SIZE_VARIABLES):
        return None
    text = ("accelerate launch started ONE process although several were asked for: without --multi_gpu it uses its "
            "simple launcher, which runs the script once. On CPUs or GPUs alike, start N processes with "
            "'accelerate launch --multi_gpu --num_processes N ...' (it runs torchrun; asymlora joins them over gloo "
            "when there is no GPU) or 'torchrun --nproc_per_node N -m asymlora ...'; see docs/DISTRIBUTED.md")
    warnings.warn(text, SingleProcessLaunchWarning, stacklevel=2)
    return text


def make_accelerator(mixed_precision: str = "no", cpu: bool = False, **kwargs: Any) -> Accelerator:
    """An :class:`accelerate.Accelerator` (one per process is enough; the loop frees its references).

    ``cpu`` is forced on when torch sees no accelerator, so that processes started by torchrun form one gloo
    group instead of training alone (module doc). ``kwargs`` go to ``Accelerator`` (e.g. ``log_with``)."""
    check_launch()
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu or not torch.accelerator.is_available(), **kwargs)
