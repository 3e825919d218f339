"""``mpiqa distort``: write a synthetically distorted set with labels and a contact sheet."""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mpiqa.cli import arguments
from mpiqa.data.distortions.kadid import DISTORTION_NAMES, N_LEVELS, distort
from mpiqa.data.distortions.sheet import contact_sheet
from mpiqa.data.distortions.tasks import level_quality
from mpiqa.data.files import discover_images
from mpiqa.data.images import ImageDecodeError, load_image
from mpiqa.data.transforms import center_crop, resize_shorter_side

logger = logging.getLogger("mpiqa.cli.distort")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distort",
        help="write KADID-style distorted images, a labels CSV and a contact sheet",
        description="Apply the 25 KADID-10k distortion types at 5 levels to clean images.",
    )
    p.add_argument("src", metavar="SRC_DIR", help="folder of clean images (searched recursively)")
    p.add_argument("out", metavar="OUT_DIR", nargs="?", help="output folder (or --out)")
    p.add_argument(
        "--out",
        dest="out_option",
        metavar="DIR",
        help="output folder, as the other commands take it",
    )
    p.add_argument(
        "--types",
        nargs="+",
        default=list(DISTORTION_NAMES),
        choices=DISTORTION_NAMES,
        metavar="TYPE",
    )
    p.add_argument(
        "--levels",
        nargs="+",
        type=int,
        default=list(range(1, N_LEVELS + 1)),
        choices=range(1, N_LEVELS + 1),
    )
    p.add_argument(
        "--size",
        type=arguments.integer(1),
        default=None,
        help="resize shorter side and centre crop to this first",
    )
    p.add_argument(
        "--limit",
        type=arguments.integer(1),
        default=None,
        help="use at most this many source images",
    )
    p.add_argument("--seed", type=arguments.seed, default=0)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.out and args.out_option and args.out != args.out_option:
        raise ValueError(f"two output folders: {args.out} and --out {args.out_option}")
    args.out = args.out or args.out_option
    if not args.out:
        raise ValueError("give the output folder: OUT_DIR or --out DIR")
    sources = discover_images([args.src], recursive=True).warn_unreadable().files[: args.limit]
    if not sources:
        raise FileNotFoundError(f"no images in {args.src}")
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    failed = 0
    total = len(sources) * len(args.types) * len(args.levels)
    first_clean = None
    with (
        open(out / "labels.csv", "w", newline="") as f,
        tqdm(total=total, unit="img", file=sys.stderr, disable=None) as bar,
    ):
        writer = csv.writer(f)
        # "score" (higher is better): what `--dataset csv` reads by default
        writer.writerow(["path", "source", "distortion", "level", "score"])
        for index, source in enumerate(sources):
            try:
                clean = load_image(source)
            except ImageDecodeError as err:
                print(f"mpiqa: error: {err}", file=sys.stderr)
                failed += 1
                bar.update(len(args.types) * len(args.levels))
                continue
            if args.size:
                clean = center_crop(resize_shorter_side(clean, args.size), args.size)
            first_clean = first_clean or clean
            stem = f"{index:05d}_{Path(source).stem}"
            for name in args.types:
                for level in args.levels:
                    pixels = distort(clean, name, level, seed=args.seed + index)
                    rel = f"images/{stem}__{name}__L{level}.png"
                    Image.fromarray(np.rint(pixels * 255).astype(np.uint8)).save(out / rel)
                    writer.writerow([rel, source, name, level, f"{level_quality(level):.6f}"])
                    bar.update()
    if first_clean is not None:
        sheet = contact_sheet(first_clean, out / "contact_sheet.png", args.types, seed=args.seed)
        logger.info("contact sheet: %s", sheet)
    if failed:
        print(f"mpiqa: {failed} source image(s) could not be read", file=sys.stderr)
        return 1
    return 0
