"""The ``asymlora`` command: one sub-command per module in this package.

Each sub-command module exposes ``register(subparsers)`` which adds its parser and sets
``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order ``--help`` lists them. A module that fails to import
# (an optional dependency missing) is reported when its command is used, not at start-up.
SUBCOMMANDS = ("demo", "run", "grid", "report", "eval", "generate", "theory", "similarity", "bench", "info")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asymlora",
        description="Asymmetric low-rank adaptation (Zhu et al., ICML 2024): "
        "train B-only / A-only / LoRA adapters, run the paper's experiments, theory and similarity tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"asymlora.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("asymlora.cli."):
                continue  # this sub-command is not part of this build
            missing = err.name
            p = sub.add_parser(name, help=f"(unavailable: needs '{missing}'; pip install 'asymlora[experiments]')")
            p.set_defaults(func=_missing_dependency(name, missing))
            continue
        module.register(sub)
    return parser


def _missing_dependency(command: str, missing: str | None):
    def run(_args: argparse.Namespace) -> int:
        print(f"asymlora {command}: needs the package '{missing}'. Install the extras: "
              f"pip install 'asymlora[experiments]'", file=sys.stderr)
        return 2
    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
