"""Evaluate a model on a part of a dataset split and write the report."""

from __future__ import annotations

import logging
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path

from mpiqa.data.datasets import load_dataset
from mpiqa.data.splits import Split
from mpiqa.evaluation.metrics import all_metrics, srcc_interval
from mpiqa.evaluation.predict import predict_records
from mpiqa.evaluation.report import write_report
from mpiqa.models.base import IQAModel

logger = logging.getLogger(__name__)


def split_records(dataset, part: str, split_file: Path | None):
    """Records of ``part`` ("train", "val", "test", or "all" of the dataset).

    Raises:
        FileNotFoundError: a part other than "all" without a split file.
        ValueError: the part is empty.
    """
    if part == "all":
        return dataset.records
    needs = f"--split {part} needs a split file (--split-file, or split.json beside the checkpoint)"
    if split_file is None:
        raise FileNotFoundError(needs)
    if not Path(split_file).exists():
        raise FileNotFoundError(f"split file {split_file}: no such file; {needs}")
    if not Path(split_file).is_file():
        raise ValueError(f"split file {split_file}: not a file")
    keys = Split.load(split_file).parts()[part]
    if not keys:
        raise ValueError(f"the {part} part of {split_file} is empty")
    return dataset.subset(keys)


def training_images(checkpoint) -> set[str] | None:
    """Keys of the images that trained ``checkpoint``, from its run's files: the training
    part of ``split.json`` (a training run) or the ``images`` of ``finetune.json`` (a
    fine-tuning); None where neither says."""
    import json

    folder = Path(checkpoint).parent
    try:
        if (folder / "finetune.json").is_file():
            images = json.loads((folder / "finetune.json").read_text("utf-8")).get("images")
            if images is not None:  # a round of the N-shot protocol has its split.json
                return set(images)
        if (folder / "split.json").is_file():
            return set(Split.load(folder / "split.json").train)
    except (OSError, ValueError, AttributeError, TypeError):
        logger.warning("%s: could not read which images trained it", folder)
    return None


@dataclass(frozen=True)
class KnownImages:
    """Images that trained a model: dataset ``keys``, and ``names`` matched in any folder
    (for names unique to their database, such as BIQ2021's ``ss01 (12).jpg``; never for
    a user's own, where ``1.jpg`` of one folder is not ``1.jpg`` of another)."""

    keys: frozenset[str]
    names: frozenset[str] = frozenset()

    def __contains__(self, key: object) -> bool:
        return key in self.keys or (isinstance(key, str) and Path(key).name in self.names)


def count_trained_on(records, trained_on: Container[str] | None) -> int:
    """How many of ``records`` (by key) are in ``trained_on``: a set of keys, or
    :class:`KnownImages`."""
    if trained_on is None:
        return 0
    return sum(r.key in trained_on for r in records)


def evaluate_model(
    model: IQAModel,
    dataset_name: str,
    root,
    part: str,
    out,
    split_file=None,
    check_images=True,
    batch_size=64,
    name="model",
    dataset_options: dict | None = None,
    trained_on: Container[str] | None = None,
    progress: bool = False,
    record: dict | None = None,
) -> dict:
    """Metrics of ``model`` on ``part``; writes metrics.json, table.md, scatter.png and
    predictions.csv into ``out``. metrics.json also says what was evaluated: the model's
    ``name`` (and ``record``, e.g. its checkpoint), the dataset's folder, adapter options
    and split file.

    An image that cannot be decoded is logged (an error naming the file), left out of the
    metrics and predictions.csv, and listed under ``failed`` in metrics.json; the rest
    are scored. ``n_failed`` in the returned metrics counts them.

    ``trained_on``: the images that trained the model (keys, or :class:`KnownImages`);
    those among the evaluated ones are counted (``n_trained_on`` in metrics.json) and a
    warning says the figures are then partly in-sample. ``srcc_ci95`` in metrics.json is
    the SRCC's bootstrap interval over the images (:func:`srcc_interval`).
    """
    dataset = load_dataset(dataset_name, root, check_images=check_images, **(dataset_options or {}))
    records = split_records(dataset, part, Path(split_file) if split_file else None)
    seen = count_trained_on(records, trained_on)
    if seen:
        logger.warning(
            "%d of the %d images evaluated trained this model: its figures on them are "
            "in-sample, optimistic for other images",
            seen, len(records),
        )  # fmt: skip
    preds = predict_records(model, records, batch_size, on_error="skip", progress=progress)
    for index in sorted(preds.failed):  # the reason names the file
        logger.error("%s (left out of the metrics)", preds.failed[index])
    scored = [i for i in range(len(records)) if i not in preds.failed]
    metrics = {
        **all_metrics(preds.scores[scored], preds.targets[scored]),
        "n_failed": len(preds.failed),
    }
    extra: dict = {}
    if len(scored) >= 3:  # how much the SRCC owes to which images were rated
        extra["srcc_ci95"] = list(srcc_interval(preds.scores[scored], preds.targets[scored]))
        extra["srcc_ci95_method"] = "percentile bootstrap over images, 1,000 resamples, seed 0"
    extra |= {
        "split": part,
        "dataset": dataset.name,
        "root": str(Path(root).resolve()),
        "options": dict(dataset_options or {}),
        "split_file": str(Path(split_file).resolve()) if split_file and part != "all" else None,
        "model": name,
        **(record or {}),
        "failed": [records[i].key for i in sorted(preds.failed)],
        **({"n_trained_on": seen} if trained_on is not None else {}),
    }
    write_report(
        out,
        f"{name} on {dataset.name} {part}",
        metrics,
        preds.scores[scored],
        preds.targets[scored],
        [records[i].key for i in scored],
        extra,
    )
    return metrics


def evaluate_checkpoint(
    checkpoint,
    dataset_name,
    root,
    part,
    out,
    split_file=None,
    check_images=True,
    weights=None,
    device="cpu",
    batch_size=64,
    dataset_options: dict | None = None,
    progress: bool = False,
) -> dict:
    """As :func:`evaluate_model` for a training checkpoint; the split defaults to the
    ``split.json`` of the checkpoint's run. The images that trained it (the training part
    of its run's ``split.json``, or the ``images`` of a fine-tuning's ``finetune.json``)
    are counted among those evaluated, with a warning (see :func:`evaluate_model`)."""
    from mpiqa.models.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint, weights=weights, device=device).for_inference()
    split_file = Path(split_file) if split_file else Path(checkpoint).parent / "split.json"
    name = Path(checkpoint).parent.name or "model"
    trained_on = training_images(checkpoint)
    return evaluate_model(
        model,
        dataset_name,
        root,
        part,
        out,
        split_file,
        check_images,
        batch_size,
        name,
        dataset_options,
        trained_on,
        progress,
        {"checkpoint": str(Path(checkpoint).resolve())},
    )
