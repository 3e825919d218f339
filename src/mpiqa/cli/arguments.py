"""Argument types shared by the sub-commands: a bad value is refused by argparse, naming
the argument (``mpiqa score: error: argument --batch-size: ...``, exit 2), before any
model is loaded, instead of failing later with a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: the largest batch any command accepts: far beyond what fits in memory at 224 px, and
#: far below what makes ``itertools.islice`` or tensor shapes overflow
MAX_BATCH = 1 << 16
#: any other count (epochs, steps, rounds, files ...): what a C int holds
MAX_COUNT = (1 << 31) - 1


def integer(low: int = 1, high: int = MAX_COUNT) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def real(
    low: float = -math.inf,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> Callable[[str], float]:
    """An argparse type: a finite number in ``[low, high]`` (an open end with
    ``open_low`` / ``open_high``); ``nan`` and ``inf`` are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        below = value <= low if open_low else value < low
        above = value >= high if open_high else value > high
        if not math.isfinite(value) or below or above:
            left, right = "(" if open_low else "[", ")" if open_high else "]"
            raise argparse.ArgumentTypeError(
                f"must be a finite number in {left}{low:g}, {high:g}{right}, got {text}"
            )
        return value

    parse.__name__ = "number"
    return parse


#: counts that may be zero (worker processes, frozen blocks)
non_negative = integer(0)
#: learning rates, weights of loss terms: positive or zero
positive_real = real(0.0, open_low=True)
non_negative_real = real(0.0)
#: a fraction of a part to use (all of it at most)
fraction = real(0.0, 1.0, open_low=True)
#: the fraction of a dataset held out as a test or validation part (none to not all)
split_fraction = real(0.0, 1.0, open_high=True)
batch_size = integer(1, MAX_BATCH)
#: random seeds: what numpy and torch both take
seed = integer(0, 2**32 - 1)


def device(text: str) -> str:
    """An argparse type: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``, usable on this
    machine (see :func:`mpiqa.models.registry.resolve_device`). Returns ``text``."""
    from mpiqa.models.registry import resolve_device

    try:
        resolve_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


device.__name__ = "device"


def add_dataset_option(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--dataset-option KEY=VALUE``, repeatable (``None`` when not given; read with
    :func:`mpiqa.options.parse_key_values`). ``note`` goes into the help's parentheses."""
    parser.add_argument(
        "--dataset-option",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help=f"an option of the dataset adapter (repeatable{note}), e.g. for csv: "
        "csv_file=labels.csv score_column=mos scale=1,5 lower_better=true",
    )


def add_training_on_error(parser: argparse.ArgumentParser) -> None:
    """``--on-error fail|skip`` of the training commands (``None`` when not given: the
    configuration's ``data.on_error``)."""
    parser.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        help="images of the split that cannot be decoded (all are checked before training): "
        "fail: stop and name them (default); skip: train and evaluate without them, listed "
        "in split.json",
    )
