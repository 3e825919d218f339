"""``mpiqa score``: score image files and folders into a CSV."""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

import torch
from tqdm import tqdm

from mpiqa.data.files import discover_images
from mpiqa.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError
from mpiqa.data.transforms import CROP_MODES
from mpiqa.models.registry import create_model, list_models
from mpiqa.scoring import score_files
from mpiqa.training.checkpoint import load_checkpoint

logger = logging.getLogger("mpiqa.cli.score")

DEFAULT_MODEL = "clip-iqa"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score images; writes a CSV (path,score)",
        description=(
            "Score image files and folders. Rows come in natural sort order. A file that "
            "cannot be scored gets one line on stderr; exit status 1 says some failed, "
            "2 a usage or setup error."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=list_models(),
        help="quality model (default %(default)s)",
    )
    p.add_argument(
        "--backbone",
        default=None,
        metavar="ARCH",
        help="backbone architecture, e.g. ViT-B/32, ViT-B/16, test-tiny",
    )
    p.add_argument(
        "--weights",
        default=None,
        metavar="FILE|random",
        help="backbone checkpoint (OpenAI .pt, open_clip, transformers dir); 'random' for seeded "
        "random weights (smoke tests, benchmarks); default: the backbone's registered weights, "
        "looked for in $MPIQA_CACHE_DIR",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        metavar="FILE",
        help="a trained prompt model (best.safetensors from mpiqa train); adds the predicted "
        "distortion type and scene as columns. --weights then overrides its backbone weights",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of --weights random (default %(default)s)"
    )
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="N")
    p.add_argument(
        "--workers",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="decoding processes (default: cores - 1, at most 8)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default %(default)s)")
    p.add_argument(
        "--crop",
        choices=CROP_MODES,
        default="center",
        help="center: CLIP's resize + centre crop; multi: mean over native-resolution "
        "crops; full: the whole image",
    )
    p.add_argument(
        "--n-crops",
        type=_positive_int,
        default=5,
        metavar="K",
        help="crops per image with --crop multi",
    )
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse larger images (default %(default)s)",
    )
    p.add_argument(
        "--out", default=None, metavar="FILE.csv", help="write the CSV here (default: stdout)"
    )
    p.add_argument(
        "--on-error",
        choices=("skip", "fail"),
        default="skip",
        help="skip: report bad files and score the rest; fail: stop at the first",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


@contextlib.contextmanager
def _open_output(path: str | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        yield f


def _check_device(device: str) -> None:
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")


def run(args: argparse.Namespace) -> int:
    _check_device(args.device)
    found = discover_images(args.paths, recursive=args.recursive)
    if found.ignored:
        shown = ", ".join(found.ignored[:3]) + (" ..." if len(found.ignored) > 3 else "")
        logger.info("left out %d file(s) without an image extension: %s", len(found.ignored), shown)
    if not found.files:
        raise FileNotFoundError(f"no image files in {' '.join(args.paths)}")
    if args.weights == "random" and not args.checkpoint:
        logger.warning(
            "--weights random: randomly initialised backbone (seed %d); its scores mean nothing",
            args.seed,
        )
    if args.checkpoint:
        model = load_checkpoint(
            args.checkpoint,
            weights=args.weights,
            device=args.device,
            crop=args.crop,
            n_crops=args.n_crops,
        )
    else:
        model = create_model(
            args.model,
            weights=args.weights,
            backbone=args.backbone,
            device=args.device,
            seed=args.seed,
            crop=args.crop,
            n_crops=args.n_crops,
        )
    columns = list(model.extra_columns)
    failed = 0
    with _open_output(args.out) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path", "score", *columns])
        results = score_files(
            model,
            found.files,
            batch_size=args.batch_size,
            workers=args.workers,
            on_error=args.on_error,
            max_pixels=args.max_pixels,
        )
        progress = tqdm(
            total=len(found.files),
            unit="img",
            file=sys.stderr,
            disable=True if args.no_progress else None,
        )
        try:
            for result in results:
                progress.update()
                if result.error is not None:
                    failed += 1
                    progress.clear()
                    print(f"mpiqa: error: {result.path}: {result.error}", file=sys.stderr)
                    continue
                extra = result.extra or {}
                writer.writerow(
                    [result.path, f"{result.score:.6f}", *(extra.get(c, "") for c in columns)]
                )
                out.flush()
        except ImageDecodeError as err:
            progress.close()
            print(f"mpiqa: error: {err} (stopping: --on-error fail)", file=sys.stderr)
            return 1
        progress.close()
    scored = len(found.files) - failed
    if failed:
        print(
            f"mpiqa: {failed} of {len(found.files)} file(s) could not be scored; {scored} scored",
            file=sys.stderr,
        )
        return 1
    logger.info("scored %d file(s)%s", scored, f" into {args.out}" if args.out else "")
    return 0
