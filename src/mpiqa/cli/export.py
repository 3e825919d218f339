"""``mpiqa export``: a trained or zero-shot model as one TorchScript file."""

from __future__ import annotations

import argparse
import logging

import torch

from mpiqa.export import export_torchscript, load_exported
from mpiqa.models.registry import create_model, list_models
from mpiqa.training.checkpoint import load_checkpoint

logger = logging.getLogger("mpiqa.cli.export")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model (prompts folded in) for deployment")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="FILE")
    source.add_argument("--model", choices=list_models())
    p.add_argument("--backbone", metavar="ARCH")
    p.add_argument("--weights", metavar="FILE|random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    p.add_argument("--out", required=True, metavar="FILE")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "onnx":
        raise ValueError("--format onnx is not implemented yet; use --format torchscript")
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, weights=args.weights)
    else:
        model = create_model(
            args.model, weights=args.weights, backbone=args.backbone, seed=args.seed
        )
    path = export_torchscript(model, args.out)
    # parity check on a fresh batch of another size
    pixels = torch.randn(3, 3, model.image_size, model.image_size)
    with torch.no_grad():
        difference = float((load_exported(path)(pixels) - model(pixels)).abs().max())
    print(f"wrote {path}; largest difference from eager mode on 3 random images: {difference:.2e}")
    return 0
