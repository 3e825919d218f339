"""``mpiqa list-datasets``: the dataset adapters and what they read."""

from __future__ import annotations

import argparse
import textwrap

from mpiqa.data.datasets import dataset_descriptions
from mpiqa.data.datasets.base import dataset_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list-datasets", help="list dataset adapters")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for name, description in dataset_descriptions().items():
        print(f"  {name:<10} {description}")
        options = dataset_options(name)
        if options:  # what --dataset-option KEY=VALUE sets, with the default
            listed = ", ".join(f"{k}={_shown(v)}" for k, v in options.items())
            print(textwrap.fill(listed, 88, initial_indent=" " * 13 + "options: ",
                                subsequent_indent=" " * 22))  # fmt: skip
    return 0


def _shown(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
