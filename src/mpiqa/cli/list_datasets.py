"""``mpiqa list-datasets``: the dataset adapters and what they read."""

from __future__ import annotations

import argparse

from mpiqa.data.datasets import dataset_descriptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list-datasets", help="list dataset adapters")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for name, description in dataset_descriptions().items():
        print(f"  {name:<10} {description}")
    return 0
