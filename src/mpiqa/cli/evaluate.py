"""``mpiqa evaluate``: SRCC / KRCC / PLCC / RMSE of a trained or zero-shot model on a split."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mpiqa.cli import arguments
from mpiqa.evaluation.evaluate import KnownImages, evaluate_checkpoint, evaluate_model
from mpiqa.models.registry import (
    DEFAULT_MODEL,
    ZERO_SHOT_MODEL,
    create_model,
    list_models,
    model_for,
)

logger = logging.getLogger("mpiqa.cli.evaluate")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model on a dataset split; writes metrics.json, table.md, scatter.png",
        description="Evaluate a model on labelled images: a label file of your own (LABELS: "
        "image paths relative to its folder, and scores) or a dataset adapter (--dataset, "
        "--root). Writes metrics.json, table.md, predictions.csv and scatter.png to --out; "
        "images that cannot be decoded are named and left out of the metrics (exit status 1).",
    )
    arguments.add_label_file(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", metavar="FILE", help="best.safetensors of a training run")
    source.add_argument(
        "--model", choices=list_models(),
        help=f"a model that is not a training run's (default {DEFAULT_MODEL}, what `mpiqa "
        f"score` uses; {ZERO_SHOT_MODEL} when --backbone or --weights names a CLIP)",
    )  # fmt: skip
    p.add_argument("--backbone", metavar="ARCH")
    p.add_argument("--weights", metavar="FILE|random")
    p.add_argument("--seed", type=arguments.seed, default=0)
    p.add_argument(
        "--dataset",
        help="dataset adapter (default with --checkpoint: the run's, from its config.json)",
    )
    p.add_argument("--root", help="dataset folder (default with --checkpoint: the run's)")
    arguments.add_dataset_option(
        p, "; with --checkpoint on the run's dataset and root, added to the run's"
    )
    p.add_argument(
        "--split", choices=("train", "val", "test", "all"),
        help="the part to evaluate on (default: test where there is a split file, the "
        "checkpoint's run's or --split-file; else all of the dataset, where a warning "
        "counts any images that trained the checkpoint)",
    )  # fmt: skip
    p.add_argument("--split-file", help="default: split.json of the checkpoint's run")
    p.add_argument("--batch-size", type=arguments.batch_size, default=64)
    p.add_argument("--device", default="cpu", type=arguments.device)
    p.add_argument(
        "--no-progress", action="store_true",
        help="no progress bar (it shows only when stderr is a terminal)",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(run=run)


def _run_data(checkpoint: str) -> dict:
    """The dataset, root and adapter options that trained ``checkpoint`` (the
    config.json of its run), or {} where there is none (a fine-tuning, a copied file)."""
    try:
        data = json.loads((Path(checkpoint).parent / "config.json").read_text("utf-8"))["data"]
        return {"dataset": str(data["dataset"]), "root": str(data["root"]),
                "options": dict(data.get("options") or {})}  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _same_folder(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def shipped_training_images(name: str) -> KnownImages | None:
    """The BIQ2021 images that trained a shipped model (its ``NAME-split.json`` beside
    the weights), or None for a model that ships without one. BIQ2021's names
    (``ss01 (12).jpg``) are unique in the database, so the images are known by name too
    when copied into a folder of their own (``--dataset csv``)."""
    from mpiqa.backbones.pretrained import packaged_path
    from mpiqa.data.splits import Split

    path = packaged_path(f"{name}-split.json")
    if not path.is_file():
        return None
    keys = frozenset(Split.load(path).train)
    return KnownImages(keys, frozenset(Path(k).name for k in keys))


def run(args: argparse.Namespace) -> int:
    from mpiqa.options import parse_key_values

    labels = arguments.label_file(args)
    if labels:
        dataset, (root, options) = "csv", labels
    else:
        dataset, root = args.dataset, args.root
        options = parse_key_values(args.dataset_option, "--dataset-option")
    trained = _run_data(args.checkpoint) if args.checkpoint and not labels else {}
    if trained:
        dataset, root = dataset or trained["dataset"], root or trained["root"]
        # the run's adapter options belong to its dataset: not to another, or another copy
        if dataset == trained["dataset"] and _same_folder(root, trained["root"]):
            options = {**trained["options"], **options}
            logger.info("dataset %s at %s with options %s (the run's)", dataset, root, options)
    if not dataset or not root:
        raise ValueError(
            "give a label file, or --dataset and --root"
            + (
                " (the checkpoint's run has no config.json to take them from)"
                if args.checkpoint
                else ""
            )
        )
    # a run's split.json names the run's images: not those of a label file given here
    beside = Path(args.checkpoint).parent / "split.json" if args.checkpoint and not labels else None
    has_split = args.split_file or (beside is not None and beside.is_file())
    split = args.split or ("test" if has_split else "all")
    if not args.split:
        logger.info("evaluating on %s (--split)", "the test part" if split == "test" else "all")
    if args.checkpoint:
        metrics = evaluate_checkpoint(
            args.checkpoint, dataset, root, split, args.out, args.split_file,
            weights=args.weights, device=args.device, batch_size=args.batch_size,
            dataset_options=options, progress=not args.no_progress,
        )  # fmt: skip
    else:
        name = model_for(args.model, args.backbone, args.weights)
        model = create_model(
            name,
            weights=args.weights,
            backbone=args.backbone,
            device=args.device,
            seed=args.seed,
        ).for_inference()
        metrics = evaluate_model(
            model,
            dataset,
            root,
            split,
            args.out,
            args.split_file,
            True,
            args.batch_size,
            name,
            options,
            shipped_training_images(name) if not args.weights else None,
            not args.no_progress,
        )
    print(
        f"{args.labels if labels else dataset} {split}: "
        + " ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
        )
    )
    written = json.loads((Path(args.out) / "metrics.json").read_text())
    low, high = written.get("srcc_ci95") or (None, None)
    if low is not None:
        print(f"srcc 95% interval over the images (bootstrap): {low:.4f} to {high:.4f}")
    return 1 if metrics["n_failed"] else 0  # as `mpiqa score`: some files failed
