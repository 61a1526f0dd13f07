"""Tasks: data + a model head + a metric (see docs/DATA.md).

``get_task("sentiment")`` (built-in, from pinned registry packages), ``get_task("glue/sst2")``
(online, needs ``datasets``) or ``get_task("my.csv", text_column=..., label_column=...)``.
"""

from asymlora.data.metrics import classification_metrics, regression_metrics
from asymlora.data.registry import get_task, list_tasks, register_task
from asymlora.data.task import SPLITS, DataError, Example, Task, dedupe, split_examples

__all__ = [
    "DataError", "Example", "SPLITS", "Task", "classification_metrics", "dedupe", "get_task", "list_tasks",
    "regression_metrics", "register_task", "split_examples", "encode", "encode_examples", "EncodedDataset",
]


def __getattr__(name: str):  # the encoders import torch: only when asked for
    if name in ("encode", "encode_examples", "EncodedDataset"):
        from asymlora.data import encoding as _enc
        return getattr(_enc, name)
    raise AttributeError(name)
