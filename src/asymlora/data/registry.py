"""``get_task``: a built-in task by name, ``glue/<name>``, or a user's data file by path — every modality.

Built-in tasks are named here with the module and function that build them (imported on first use, so that a
task's own dependencies load only when it is asked for); :func:`register_task` adds more at run time. Whatever
they load returns a :class:`~asymlora.tasks.protocol.TaskProtocol`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
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
    "rotated-mnist": ("asymlora.data.mnist_domains", "load_rotated_mnist"),
    "colored-mnist": ("asymlora.data.mnist_domains", "load_colored_mnist"),
    "rotated-fashion-mnist": ("asymlora.data.mnist_domains", "load_rotated_fashion_mnist"),
    "natural-instructions": ("asymlora.tasks.instruction_mmlu", "load_natural_instructions_task"),
    "xsum": ("asymlora.tasks.summarisation", "xsum_task"),
    "cnn-dm": ("asymlora.tasks.summarisation", "cnn_dm_task"),
}
_REGISTERED: dict[str, Callable[..., TaskProtocol]] = {}
# Data files of other modalities, by the ``task_kind`` option: kind -> (module, reader of (path, **options)).
# Without one (or with classification / regression) a file is a text classification / regression task.
FILE_KINDS: dict[str, tuple[str, str]] = {
    "instructions": ("asymlora.tasks.instruction_mmlu", "load_instruction_file_task"),  # JSONL, scored on MMLU
    "summarisation": ("asymlora.tasks.summarisation", "summary_file_task"),  # (document, summary), scored by ROUGE
}


def list_tasks() -> list[str]:
    """Names of the built-in (and registered) tasks; ``glue/<name>`` and file paths work too."""
    return sorted({*_BUILTIN, *_REGISTERED})


def register_task(name: str, loader: Callable[[], TaskProtocol]) -> None:
    """Add a task loader under ``name`` (e.g. from a later modality's module)."""
    _REGISTERED[name] = loader


def _call_with_options(loader: Callable[..., TaskProtocol], what: str, options: dict[str, Any]) -> TaskProtocol:
    """``loader(**options)``, refusing options the loader does not take with the list of those it does."""
    params = inspect.signature(loader).parameters
    takes = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(options) - set(takes))
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        raise DataError(f"{what} takes no option {', '.join(unknown)}; "
                        + (f"its options are {', '.join(takes)}" if takes else "it takes none"))
    return loader(**options)


def get_task(name_or_path: str | Path, **options: Any) -> TaskProtocol:
    """Load a task.

    ``name_or_path`` is a built-in name (see :func:`list_tasks`), ``glue/<name>`` (needs ``datasets``
    and the internet), or a .csv / .tsv / .jsonl file. ``options`` go to the task's loader: for a data file its
    columns and kind (``text_column``, ``label_column``, ``task_kind``, ...; a ``task_kind`` in :data:`FILE_KINDS`
    other than classification / regression routes the file to that modality's reader); for a built-in task the
    options its loader declares (e.g. a subset size). Options from the command line arrive as strings.
    """
    options = {k: v for k, v in options.items() if v is not None}
    key = str(name_or_path)
    if key in _REGISTERED:
        return _call_with_options(_REGISTERED[key], f"task {key!r}", options)
    if key.lower().startswith("glue/"):
        return _call_with_options(lambda: load_glue(key.split("/", 1)[1]), f"task {key!r}", options)
    if key in _BUILTIN:
        module, fn = _BUILTIN[key]
        return _call_with_options(getattr(importlib.import_module(module), fn), f"task {key!r}", options)
    if is_data_file(key) or Path(key).exists():
        kind = options.get("task_kind")
        if kind in FILE_KINDS:
            module, fn = FILE_KINDS[kind]
            reader = getattr(importlib.import_module(module), fn)
            rest = {k: v for k, v in options.items() if k != "task_kind"}
            return _call_with_options(functools.partial(reader, key), f"a {kind} file", rest)
        return _call_with_options(functools.partial(load_user_file, key), "a data file", options)
    raise DataError(f"unknown task {key!r}: use one of {', '.join(list_tasks())}, glue/<name>, "
                    f"or a path to a .csv, .tsv or .jsonl file")
