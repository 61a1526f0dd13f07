"""Glue between asymlora and the training stacks people already use (needs ``transformers``).

The core (``asymlora.*`` top level) stays torch-only; only this subpackage imports transformers.

* :class:`AdapterCheckpointCallback` — a ``transformers.TrainerCallback`` (works for TRL's trainers,
  which subclass ``Trainer``) that makes a Trainer's checkpoints small and writes an asymlora adapter
  folder at every save and at the end. See docs/INTEGRATIONS.md.
"""

from asymlora.integrations.trainer import ADAPTER_DIR, AdapterCheckpointCallback, frozen_state_keys

__all__ = ["AdapterCheckpointCallback", "ADAPTER_DIR", "frozen_state_keys"]
