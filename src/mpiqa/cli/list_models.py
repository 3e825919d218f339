"""``mpiqa list-models``: what ``create_model`` and ``--backbone`` accept."""

from __future__ import annotations

import argparse

from mpiqa.backbones.config import get_config, list_archs
from mpiqa.backbones.pretrained import list_pretrained
from mpiqa.models.registry import model_descriptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list-models", help="list quality models and backbone architectures")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print("Quality models (--model):")
    for name, description in model_descriptions().items():
        print(f"  {name:<22} {description}")
    pretrained = {}
    for arch, tag in list_pretrained():
        pretrained.setdefault(arch, []).append(tag)
    print("\nBackbone architectures (--backbone) [registered pretrained weights]:")
    for arch in list_archs():
        tags = ", ".join(pretrained.get(arch, [])) or "random weights only"
        print(f"  {arch:<22} {get_config(arch).description} [{tags}]")
    return 0
