"""Tasks: data + a model head + a metric (see docs/DATA.md and docs/ARCHITECTURE.md).

``get_task("sentiment")`` (built-in, from pinned registry packages), ``get_task("glue/sst2")``
(online, needs ``datasets``) or ``get_task("my.csv", text_column=..., label_column=...)``. Every task,
whatever its modality, follows :class:`asymlora.tasks.protocol.TaskProtocol`; ``Task`` is the text one.
"""

from asymlora.data.encoding import EncodedDataset, encode, encode_examples
from asymlora.data.metrics import classification_metrics, regression_metrics
from asymlora.data.registry import get_task, list_tasks, register_task
from asymlora.data.task import SPLITS, DataError, Example, Task, dedupe, split_examples

__all__ = [
    "DataError", "Example", "SPLITS", "Task", "classification_metrics", "dedupe", "get_task", "list_tasks",
    "regression_metrics", "register_task", "split_examples", "encode", "encode_examples", "EncodedDataset",
]
