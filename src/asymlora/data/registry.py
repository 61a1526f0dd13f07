"""``get_task``: a built-in task by name, ``glue/<name>``, or a user's data file by path — every modality.

Built-in tasks are named here with the module and function that build them (imported on first use, so that a
task's own dependencies load only when it is asked for); :func:`register_task` adds more at run time. Whatever
they load returns a :class:`~asymlora.tasks.protocol.TaskProtocol`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from asymlora.data.glue import load_glue
from asymlora.data.task import DataError
from asymlora.data.userfile import is_data_file, load_user_file
from asymlora.tasks.protocol import TaskProtocol

_BUILTIN: dict[str, tuple[str, str]] = {  # name: (module, loader function)
    "sentiment": ("asymlora.data.sentiment", "load_sentiment"),
    "sentiment-score": ("asymlora.data.sentiment", "load_sentiment_score"),
    "trec": ("asymlora.data.trec", "load_trec"),
    "trec-fine": ("asymlora.data.trec", "load_trec_fine"),
    "sms-spam": ("asymlora.data.sms_spam", "load_sms_spam"),
    "sarcasm": ("asymlora.data.sarcasm", "load_sarcasm"),
}
_REGISTERED: dict[str, Callable[[], TaskProtocol]] = {}


def list_tasks() -> list[str]:
    """Names of the built-in (and registered) tasks; ``glue/<name>`` and file paths work too."""
    return sorted({*_BUILTIN, *_REGISTERED})


def register_task(name: str, loader: Callable[[], TaskProtocol]) -> None:
    """Add a task loader under ``name`` (e.g. from a later modality's module)."""
    _REGISTERED[name] = loader


def get_task(name_or_path: str | Path, *, text_column: str | None = None, text_pair_column: str | None = None,
             label_column: str | None = None, task_kind: str | None = None, split_column: str | None = None,
             seed: int | None = None) -> TaskProtocol:
    """Load a task.

    ``name_or_path`` is a built-in name (see :func:`list_tasks`), ``glue/<name>`` (needs ``datasets``
    and the internet), or a .csv / .tsv / .jsonl file; the keyword flags apply to files only.
    """
    flags = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column,
             "task_kind": task_kind, "split_column": split_column, "seed": seed}
    given = {k: v for k, v in flags.items() if v is not None}
    key = str(name_or_path)
    if key in _BUILTIN or key in _REGISTERED or key.lower().startswith("glue/"):
        if given:
            raise DataError(f"{', '.join(given)} apply to data files only; task {key!r} has fixed columns and splits")
        if key in _REGISTERED:
            return _REGISTERED[key]()
        if key.lower().startswith("glue/"):
            return load_glue(key.split("/", 1)[1])
        module, fn = _BUILTIN[key]
        loader: Any = getattr(importlib.import_module(module), fn)
        return loader()

    if is_data_file(key) or Path(key).exists():
        return load_user_file(key, **given)
    raise DataError(f"unknown task {key!r}: use one of {', '.join(list_tasks())}, glue/<name>, "
                    f"or a path to a .csv, .tsv or .jsonl file")
