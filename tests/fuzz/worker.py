"""The worker: loads cases one by one under a memory limit and says what happened.

Run as ``python -m fuzz.worker MEMORY_MB`` with ``tests`` on the path (the runner does this). It reads
one JSON request per line on stdin — ``{"folder", "origin_folder", "expected", "base", "peft"}`` —
and answers one JSON line per request on stdout:

* ``outcome``: ``"loaded"`` (then ``identical``: whether the outputs equal the saved model's, bit for
  bit), ``"error"`` (then ``error_type``, ``message``, ``clean``, ``changed``) — a failed load must leave
  the model exactly as it was *and* able to take the good folder afterwards (``changed`` is false only
  if both hold);
* ``seconds``, ``peak_mb`` (the worker's peak resident memory so far).

The address-space limit makes a loader that tries to allocate gigabytes fail with ``MemoryError``
(reported as a raw error) instead of taking the machine down; the runner enforces the time limit.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import torch
from safetensors.torch import load_file

import asymlora

from .models import build, example_input, family

# Words of Python's own error messages: a clean error explains in the project's words.
RAW_MESSAGES = ("object is not", "unsupported operand", "invalid literal", "NoneType", "not subscriptable",
                "has no attribute", "positional argument", "could not convert", "unhashable", "must be str, not",
                "Traceback", "KeyError", "maximum recursion", "list index out of range", "referenced before")


def is_clean(err: BaseException) -> bool:
    """A clean error: a ``ValueError`` (``CheckpointError`` is one) whose message is the project's own."""
    text = str(err)
    return isinstance(err, ValueError) and len(text) > 10 and not any(r in text for r in RAW_MESSAGES)


def state(model: torch.nn.Module) -> tuple:
    """Everything a load could change: module types and modes, tensors, requires_grad, attributes."""
    return ([(n, type(m).__name__, m.training, sorted(vars(m))) for n, m in model.named_modules()],
            {k: v.detach().clone() for k, v in model.state_dict().items()},
            [(n, p.requires_grad) for n, p in model.named_parameters()])


def same_state(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and a[2] == b[2] and a[1].keys() == b[1].keys() and all(
        a[1][k].dtype == b[1][k].dtype and torch.equal(a[1][k], b[1][k]) for k in a[1])


def _load(base: torch.nn.Module, folder: str, peft: bool) -> torch.nn.Module:
    return asymlora.import_peft(base, folder) if peft else asymlora.load_adapter(base, folder)


def _identical(model: torch.nn.Module, base_kind: str, expected: torch.Tensor) -> bool:
    with torch.no_grad():
        out = model(example_input(family(base_kind)))
    return out.shape == expected.shape and torch.equal(out, expected)


def handle(request: dict) -> dict:
    expected = load_file(request["expected"])["output"]
    model = build(request["base"])
    before = state(model)
    t0 = time.perf_counter()
    try:
        loaded = _load(model, request["folder"], request["peft"])
    except Exception as err:  # noqa: BLE001 - classifying every error is the point
        seconds = time.perf_counter() - t0
        changed = not same_state(before, state(model))
        if not changed and request["base"] == request["origin_base"]:  # the good folder must still load
            try:
                changed = not _identical(_load(model, request["origin_folder"], request["peft"]), request["base"], expected)
            except Exception:  # noqa: BLE001
                changed = True
        return {"outcome": "error", "error_type": type(err).__name__, "message": str(err)[:300],
                "clean": is_clean(err) and not isinstance(err, MemoryError), "changed": changed, "seconds": seconds}
    seconds = time.perf_counter() - t0
    return {"outcome": "loaded", "identical": _identical(loaded, request["base"], expected), "seconds": seconds}


def main() -> None:
    memory_mb = int(sys.argv[1])
    torch.set_num_threads(1)
    if memory_mb > 0:
        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = handle(request)
        except MemoryError:
            reply = {"outcome": "error", "error_type": "MemoryError", "message": "out of memory in the harness",
                     "clean": False, "changed": True, "seconds": 0.0}
        reply["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
