"""Fault injection for the resume tests: die as if killed (exit status 137, no clean-up) after step N.

``exit_after_step(n)`` is a training callback (``asymlora.train.train(..., callbacks=[...])``); it does nothing
in a run that was itself resumed at step ≥ n, so the re-run finishes. ``python tests/killing.py N ARGS...``
runs the ``asymlora`` command line with that callback added to every training, for killing a CLI run.
"""

from __future__ import annotations

import os
import sys


def exit_after_step(n: int):
    def callback(event: str, info: dict) -> None:
        if event == "step" and info["step"] == n and (info.get("resumed_from_step") or 0) < n:
            os._exit(137)  # as if killed: no clean-up, no final writes

    return callback


def main(argv: list[str]) -> int:
    import asymlora.experiments.sweep as sweep
    from asymlora.cli import main as cli_main

    real_train, kill = sweep.train, exit_after_step(int(argv[0]))

    def train(*args, callbacks=(), **kwargs):
        return real_train(*args, callbacks=[*callbacks, kill], **kwargs)

    sweep.train = train
    return cli_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
