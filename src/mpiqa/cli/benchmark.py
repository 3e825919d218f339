"""``mpiqa benchmark``: scoring throughput vs transformers and the roofline."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mpiqa import jsonfile
from mpiqa.benchmarking import COMPILE_CHOICES, PRECISIONS, run_benchmark
from mpiqa.cli import arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="scoring throughput against transformers and the roofline")
    p.add_argument("--arch", default="ViT-B-16")
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32")
    p.add_argument("--device", default="cpu", type=arguments.device)
    p.add_argument("--batch-size", type=arguments.batch_size, default=32)
    p.add_argument("--iters", type=arguments.integer(1), default=5)
    p.add_argument("--warmup", type=arguments.non_negative, default=2)
    p.add_argument(
        "--threads",
        type=arguments.integer(1),
        default=None,
        help="torch threads (default: torch's)",
    )
    p.add_argument("--no-compare", action="store_true", help="skip transformers")
    p.add_argument("--json", metavar="OUT", help="write the figures here")
    p.add_argument(
        "--compile", nargs="?", const="both", default="none", choices=COMPILE_CHOICES,
        help="also time mpiqa (or both implementations: the default with a bare --compile) "
        "through torch.compile with frozen weights, beside their eager forms (needs a C++ "
        "compiler on CPU)",
    )  # fmt: skip
    p.add_argument(
        "--train", action="store_true",
        help="time training steps instead: prompts only vs prompts + last --blocks image "
        "blocks, each with and without gradient checkpointing, and one meta step",
    )  # fmt: skip
    p.add_argument(
        "--end-to-end", metavar="DIR",
        help="time scoring real files under DIR instead: start-up, decode + preprocess, the "
        "model alone and the whole score pipeline, each on its own (--model, --limit, "
        "--workers, --batch-size, --device, --precision)",
    )  # fmt: skip
    p.add_argument("--model", help="with --end-to-end: the model (default: the default model)")
    p.add_argument(
        "--weights", metavar="FILE|random",
        help="with --end-to-end: backbone weights of --model on --arch (random: time an "
        "architecture whose weights are not here)",
    )  # fmt: skip
    p.add_argument(
        "--limit", type=arguments.integer(1), default=500, help="with --end-to-end: at most N files"
    )
    p.add_argument(
        "--workers", type=arguments.non_negative, default=None, help="with --end-to-end: decoders"
    )
    p.add_argument(
        "--blocks", type=arguments.non_negative, default=2, help="K of the last-K-blocks set-up"
    )
    p.add_argument("--no-meta", action="store_true", help="with --train: skip the meta step")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train:
        return _run_train(args)
    if args.end_to_end:
        from mpiqa.end_to_end import run_end_to_end

        e2e = run_end_to_end(
            args.end_to_end, args.model, args.limit, args.batch_size, args.workers,
            args.device, args.precision, backbone=args.arch if args.weights else None,
            weights=args.weights,
        )  # fmt: skip
        print(e2e.table())
        if args.json:
            Path(args.json).write_text(jsonfile.dumps(e2e.to_dict(), indent=1))
        return 0
    result = run_benchmark(
        args.arch,
        args.precision,
        args.device,
        args.batch_size,
        args.warmup,
        args.iters,
        compare=not args.no_compare,
        compile=args.compile,
    )
    print(result.table())
    if args.json:
        Path(args.json).write_text(jsonfile.dumps(result.to_dict(), indent=1))
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from mpiqa.training import benchmark as bench

    if args.precision != "fp32":
        raise ValueError("--train measures fp32 steps only")
    results = [
        bench.prompt_step(
            args.arch, args.batch_size, blocks, ckpt, args.device, args.warmup, args.iters
        )
        for blocks in (0, args.blocks)
        for ckpt in (False, True)
    ]
    if not args.no_meta:
        results.append(bench.meta_step(args.arch, device=args.device))
    print(f"{args.arch}, {args.device}, {torch.get_num_threads()} threads")
    print(bench.table(results))
    if args.json:
        Path(args.json).write_text(
            jsonfile.dumps({"arch": args.arch, "device": args.device, "threads": torch.get_num_threads(),
                        "steps": bench.to_dicts(results)}, indent=1)
        )  # fmt: skip
    return 0
