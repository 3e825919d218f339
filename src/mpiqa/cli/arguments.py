"""Argument types shared by the sub-commands: a bad value is refused by argparse, naming
the argument (``mpiqa score: error: argument --batch-size: ...``, exit 2), before any
model is loaded, instead of failing later with a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

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


def add_label_file(parser: argparse.ArgumentParser) -> None:
    """A label file of one's own (positional ``labels``, optional) and the options that
    read it, as :func:`label_file` turns them into the ``csv`` adapter's options; the
    other way in is ``--dataset`` with ``--root`` and ``--dataset-option``."""
    parser.add_argument(
        "labels", nargs="?", metavar="LABELS",
        help="CSV (or .xlsx workbook) of image paths and scores; ',' ';' tab or '|' "
        "between fields, found from the header",
    )  # fmt: skip
    parser.add_argument(
        "--path-column", default="path", help="LABELS column of image paths (%(default)s)"
    )
    parser.add_argument(
        "--score-column", default="score", help="LABELS column of scores (%(default)s)"
    )
    parser.add_argument(
        "--lower-better", action="store_true", help="the scores are DMOS-like (lower = better)"
    )
    parser.add_argument(
        "--scale", nargs=2, type=real(), metavar=("LOW", "HIGH"),
        help="range of the scores (default: their min and max)",
    )  # fmt: skip
    parser.add_argument(
        "--image-dir", default=".", help="image folder, relative to the LABELS file's folder"
    )
    parser.add_argument(
        "--sheet",
        metavar="NAME",
        help="the .xlsx workbook's sheet of that name (default: the first)",
    )
    parser.add_argument(
        "--allow-outside-root", action="store_true",
        help="accept absolute paths and '..' in LABELS (refused by default, so that a label "
        "file from elsewhere cannot make mpiqa read any file)",
    )  # fmt: skip


#: the options :func:`add_label_file` adds besides ``labels`` (named in errors)
_LABEL_FLAGS = (
    "--path-column, --score-column, --image-dir, --scale, --lower-better, "
    "--allow-outside-root, --sheet"
)


def label_file(args: argparse.Namespace) -> tuple[str, dict] | None:
    """The folder and ``csv`` adapter options of the label file given by
    :func:`add_label_file`'s arguments, or None when none was given.

    Raises:
        ValueError: the label file comes with ``--dataset`` or ``--dataset-option``
            (they name another source of labels).
        FileNotFoundError: no such label file.
    """
    if not args.labels:
        return None
    if getattr(args, "dataset", None):
        raise ValueError(f"give a label file ({args.labels}) or --dataset, not both")
    if getattr(args, "dataset_option", None):
        raise ValueError(f"--dataset-option goes with --dataset (for a label file: {_LABEL_FLAGS})")
    path = Path(args.labels)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    options = dict(
        csv_file=path.name, path_column=args.path_column, score_column=args.score_column,
        image_dir=args.image_dir, lower_better=args.lower_better,
        scale=tuple(args.scale) if args.scale else None,
        allow_outside_root=args.allow_outside_root, sheet=args.sheet,
    )  # fmt: skip
    return str(path.parent), options


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
