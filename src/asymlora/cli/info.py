"""``asymlora info``: versions, the cache folder, built-in models and tasks, and the factor-policy presets."""

from __future__ import annotations

import argparse
import platform

import torch

import asymlora
from asymlora.cli.options import pad
from asymlora.config import PRESETS, paper_notation
from asymlora.data.registry import list_tasks
from asymlora.models.registry import MODELS
from asymlora.sources.fetch import cache_dir


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="show versions, the download cache and the factor-policy presets",
        description="Print library versions, the cache folder used for registry-package models and data "
                    "($ASYMLORA_CACHE, else ~/.cache/asymlora), and every preset with the paper's notation "
                    "(a hat marks the trained factor; subscripts: rand = random orthogonal, 0 = zeros, "
                    "km = Kaiming-uniform, U/V = singular vectors of W0).",
    )
    p.set_defaults(func=main)


def main(_args: argparse.Namespace) -> int:
    print(f"asymlora {asymlora.__version__}  torch {torch.__version__}  python {platform.python_version()}")
    for name in ("transformers", "peft", "accelerate"):
        try:
            module = __import__(name)
            print(f"{name} {module.__version__}")
        except ImportError:
            print(f"{name} (not installed)")
    print(f"cache: {cache_dir()}")
    print()
    print(f"{'model':<20} {'heads':<44} description")
    for spec in MODELS.values():
        print(f"{spec.name:<20} {', '.join(spec.heads):<44} {spec.description}")
    print()
    print("tasks: " + ", ".join(list_tasks()) + ", glue/<name> (online), or a .csv / .tsv / .jsonl file")
    print()
    print(f"{'preset':<20} {'paper':<14} {'A (input projection)':<24} B (output projection)")
    for name, (a, b) in PRESETS.items():
        fa = f"{a.init}, {'trained' if a.trainable else 'frozen'}"
        fb = f"{b.init}, {'trained' if b.trainable else 'frozen'}"
        print(f"{name:<20} {pad(paper_notation(a, b), 14)} {fa:<24} {fb}")
    return 0
