"""``mpiqa benchmark``: scoring throughput vs transformers and the roofline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mpiqa.benchmarking import PRECISIONS, run_benchmark


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="scoring throughput against transformers and the roofline")
    p.add_argument("--arch", default="ViT-B-16")
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-compare", action="store_true", help="skip transformers")
    p.add_argument("--json", metavar="OUT", help="write the figures here")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_benchmark(
        args.arch,
        args.precision,
        args.device,
        args.batch_size,
        args.warmup,
        args.iters,
        compare=not args.no_compare,
    )
    print(result.table())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
    return 0
