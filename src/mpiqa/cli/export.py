"""``mpiqa export``: a trained or zero-shot model as one TorchScript or ONNX file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mpiqa.cli import arguments
from mpiqa.export import FORMATS, export, parity
from mpiqa.models.checkpoint import load_checkpoint
from mpiqa.models.registry import (
    DEFAULT_MODEL,
    ZERO_SHOT_MODEL,
    create_model,
    list_models,
    model_for,
)

logger = logging.getLogger("mpiqa.cli.export")

PARITY_TOLERANCE = 1e-4


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model (prompts folded in) for deployment",
        description="Write the model as one file from CLIP-normalised pixels (N, 3, S, S) to "
        "scores (N,), with the preprocessing it expects in its metadata (key 'mpiqa'), then "
        "check it against eager mode on 3 random 8-bit images.",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", metavar="FILE", help="best.safetensors of a training run")
    source.add_argument(
        "--model", choices=list_models(),
        help=f"default {DEFAULT_MODEL}, what `mpiqa score` uses ({ZERO_SHOT_MODEL} when "
        "--backbone or --weights names a CLIP)",
    )  # fmt: skip
    p.add_argument("--backbone", metavar="ARCH")
    p.add_argument("--weights", metavar="FILE|random")
    p.add_argument("--seed", type=arguments.seed, default=0)
    p.add_argument(
        "--format", choices=FORMATS, default=None,
        help="default: from --out's suffix (.onnx: onnx), else torchscript",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="FILE")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fmt = args.format or ("onnx" if Path(args.out).suffix == ".onnx" else "torchscript")
    if (fmt == "onnx") != (Path(args.out).suffix == ".onnx"):
        raise ValueError(f"--out {args.out}: ONNX files, and only they, must end in .onnx")
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, weights=args.weights)
        source = Path(args.checkpoint).name
    else:
        source = model_for(args.model, args.backbone, args.weights)
        model = create_model(source, weights=args.weights, backbone=args.backbone, seed=args.seed)
    path = export(model, args.out, fmt, source=source)
    try:
        difference = parity(model, path)
    except ImportError:
        logger.warning("wrote %s; onnxruntime is not installed, so parity was not checked", path)
        return 0
    print(
        f"wrote {path} ({fmt}); largest difference from eager mode on 3 random 8-bit images: {difference:.2e}"
    )
    if difference > PARITY_TOLERANCE:
        logger.error("the exported model differs from eager mode by more than %g", PARITY_TOLERANCE)
        return 1
    return 0
