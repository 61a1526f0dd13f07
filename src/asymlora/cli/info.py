"""``asymlora info``: versions, the cache folder, and the factor-policy presets with the paper's notation."""

from __future__ import annotations

import argparse
import os
import platform

import asymlora
from asymlora.config import PRESETS, paper_notation


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
    import torch


    print(f"asymlora {asymlora.__version__}  torch {torch.__version__}  python {platform.python_version()}")
    for name in ("transformers", "peft", "accelerate"):
        try:
            module = __import__(name)
            print(f"{name} {module.__version__}")
        except ImportError:
            print(f"{name} (not installed)")
    print(f"cache: {os.environ.get('ASYMLORA_CACHE') or os.path.expanduser('~/.cache/asymlora')}")
    print()
    print(f"{'preset':<20} {'paper':<14} {'A (input projection)':<24} B (output projection)")
    for name, (a, b) in PRESETS.items():
        fa = f"{a.init}, {'trained' if a.trainable else 'frozen'}"
        fb = f"{b.init}, {'trained' if b.trainable else 'frozen'}"
        print(f"{name:<20} {paper_notation(a, b):<14} {fa:<24} {fb}")
    return 0
