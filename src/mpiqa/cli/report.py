"""``mpiqa report``: a triage page for the CSV of ``mpiqa score``."""

from __future__ import annotations

import argparse
import logging

from mpiqa.cli import arguments
from mpiqa.triage import write_report

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="an HTML page of the worst and best photos in a scores CSV",
        description=(
            "Write one self-contained HTML page for a CSV of `mpiqa score`: the worst and "
            "best photos with their scores, a histogram, counts per predicted distortion "
            "and scene (when the CSV has them) and a sortable table of every photo. Open "
            "it in a browser; no server is needed."
        ),
    )
    p.add_argument("scores", metavar="SCORES.csv", help="the CSV `mpiqa score --out` wrote")
    p.add_argument("--out", required=True, metavar="REPORT.html")
    p.add_argument(
        "--root", default=None, metavar="DIR",
        help="folder the CSV's relative paths start from (default: the current folder, "
        "where `mpiqa score` ran)",
    )  # fmt: skip
    p.add_argument(
        "-n",
        type=arguments.integer(1),
        default=20,
        metavar="N",
        help="worst and best N (default 20)",
    )
    p.add_argument(
        "--thumb-size", type=arguments.integer(16, 4096), default=256, metavar="PX",
        help="longer side of the embedded thumbnails (default 256)",
    )  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    count = write_report(
        args.scores, args.out, image_root=args.root, n=args.n, thumb_size=args.thumb_size
    )
    print(f"wrote {args.out}: {count} photos, worst and best {min(args.n, count)} shown")
    return 0
