"""Fuzzing of adapter loading (issue 15): mutated adapter and PEFT folders, loaded in limited workers.

* :mod:`.edit` — edit a saved folder: its JSON config, its tensor file (re-written with a matching
  sha256), and the format-3 binding of the two (``resign``).
* :mod:`.models` — the small base models the cases are built on.
* :mod:`.cases` — the generator: one original folder per (model, adapter) and seeded mutations of it.
* :mod:`.worker` / :mod:`.runner` — each case loaded in a worker process under a time and memory
  limit (restarted on a hang) and classified.

``python -m tests.fuzz --cases 5000`` runs them (see docs/RELIABILITY.md).
"""
