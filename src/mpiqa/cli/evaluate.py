"""``mpiqa evaluate``: SRCC / KRCC / PLCC / RMSE of a trained or zero-shot model on a split."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mpiqa.data.datasets import load_dataset
from mpiqa.data.splits import Split
from mpiqa.evaluation.metrics import all_metrics
from mpiqa.evaluation.predict import predict_records
from mpiqa.evaluation.report import write_report
from mpiqa.models.registry import create_model, list_models
from mpiqa.training.checkpoint import load_checkpoint

logger = logging.getLogger("mpiqa.cli.evaluate")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model on a dataset split; writes metrics.json, table.md, scatter.png",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="FILE", help="best.safetensors of a training run")
    source.add_argument("--model", choices=list_models(), help="a zero-shot model")
    p.add_argument("--backbone", metavar="ARCH")
    p.add_argument("--weights", metavar="FILE|random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--split", choices=("train", "val", "test", "all"), default="test")
    p.add_argument("--split-file", help="default: split.json of the checkpoint's run")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(run=run)


def _records(dataset, part: str, split_file: Path | None):
    if part == "all":
        return dataset.records
    if split_file is None or not split_file.is_file():
        raise FileNotFoundError(
            f"--split {part} needs a split file (--split-file, or split.json beside the checkpoint)"
        )
    keys = Split.load(split_file).parts()[part]
    if not keys:
        raise ValueError(f"the {part} part of {split_file} is empty")
    return dataset.subset(keys)


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
) -> dict:
    model = load_checkpoint(checkpoint, weights=weights, device=device)
    split_file = Path(split_file) if split_file else Path(checkpoint).parent / "split.json"
    return _evaluate(
        model,
        dataset_name,
        root,
        part,
        out,
        split_file,
        check_images,
        batch_size,
        name=Path(checkpoint).parent.name or "model",
    )


def _evaluate(
    model, dataset_name, root, part, out, split_file, check_images, batch_size, name
) -> dict:
    dataset = load_dataset(dataset_name, root, check_images=check_images)
    records = _records(dataset, part, split_file)
    preds = predict_records(model, records, batch_size)
    metrics = all_metrics(preds.scores, preds.targets)
    write_report(
        out,
        f"{name} on {dataset.name} {part}",
        metrics,
        preds.scores,
        preds.targets,
        [r.key for r in records],
        {"split": part, "dataset": dataset.name},
    )
    return metrics


def run(args: argparse.Namespace) -> int:
    split_file = Path(args.split_file) if args.split_file else None
    if args.checkpoint:
        metrics = evaluate_checkpoint(
            args.checkpoint,
            args.dataset,
            args.root,
            args.split,
            args.out,
            split_file,
            weights=args.weights,
            device=args.device,
            batch_size=args.batch_size,
        )
    else:
        model = create_model(
            args.model,
            weights=args.weights,
            backbone=args.backbone,
            device=args.device,
            seed=args.seed,
        )
        metrics = _evaluate(
            model,
            args.dataset,
            args.root,
            args.split,
            args.out,
            split_file,
            True,
            args.batch_size,
            name=args.model,
        )
    print(
        " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
    )
    return 0
