"""``mpiqa evaluate``: SRCC / KRCC / PLCC / RMSE of a trained or zero-shot model on a split."""

from __future__ import annotations

import argparse

from mpiqa.cli import arguments
from mpiqa.evaluation.evaluate import evaluate_checkpoint, evaluate_model
from mpiqa.models.registry import create_model, list_models


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
    p.add_argument("--seed", type=arguments.seed, default=0)
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", required=True)
    arguments.add_dataset_option(p)
    p.add_argument("--split", choices=("train", "val", "test", "all"), default="test")
    p.add_argument("--split-file", help="default: split.json of the checkpoint's run")
    p.add_argument("--batch-size", type=arguments.batch_size, default=64)
    p.add_argument("--device", default="cpu", type=arguments.device)
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mpiqa.options import parse_key_values

    options = parse_key_values(args.dataset_option, "--dataset-option")
    if args.checkpoint:
        metrics = evaluate_checkpoint(
            args.checkpoint, args.dataset, args.root, args.split, args.out, args.split_file,
            weights=args.weights, device=args.device, batch_size=args.batch_size,
            dataset_options=options,
        )  # fmt: skip
    else:
        model = create_model(
            args.model,
            weights=args.weights,
            backbone=args.backbone,
            device=args.device,
            seed=args.seed,
        ).for_inference()
        metrics = evaluate_model(
            model,
            args.dataset,
            args.root,
            args.split,
            args.out,
            args.split_file,
            True,
            args.batch_size,
            args.model,
            options,
        )
    print(
        " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
    )
    return 1 if metrics["n_failed"] else 0  # as `mpiqa score`: some files failed
