"""``mpiqa ablate``: the GRMP-IQA ablation table for one dataset and backbone.

Variants: the full method (meta-pre-trained prompts + gradient regularisation), without
meta pre-training, without gradient regularisation, without both, text prompts only,
visual prompts only. Each runs the few-shot n-round protocol; the table reports test
SRCC / PLCC (median, mean +- std) with the command and seeds of every row.
"""

from __future__ import annotations

import argparse
import copy
import logging
import shlex
from pathlib import Path

from mpiqa import jsonfile
from mpiqa.cli import arguments
from mpiqa.cli.train import build_config
from mpiqa.training.rounds import run_rounds

logger = logging.getLogger("mpiqa.cli.ablate")

# name -> (uses meta prompts, uses gradient regularisation, extra overrides, description).
# The prompt rows set what trains themselves, so that their names hold under any
# configuration (the grmp-paper preset freezes the visual prompts: its "visual-only" row
# would otherwise train no prompt at all).
VARIANTS = {
    "full": (True, True, [], "meta prompts + gradient regularisation"),
    "no-meta": (False, True, [], "without meta pre-training"),
    "no-grad-reg": (True, False, [], "without gradient regularisation"),
    "neither": (False, False, [], "without both"),
    "text-only": (
        True,
        True,
        ["model.visual_depth=0", "model.train_text_context=true"],
        "text prompts only",
    ),
    "visual-only": (
        True,
        True,
        ["model.train_text_context=false", "model.train_visual_prompts=true"],
        "visual prompts only (text context frozen)",
    ),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablate", help="run the GRMP-IQA ablation table for a dataset (few-shot, n rounds)"
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", required=True)
    arguments.add_dataset_option(p)
    arguments.add_training_on_error(p)
    p.add_argument(
        "--init-prompts",
        required=True,
        metavar="FILE",
        help="meta_prompts.safetensors from mpiqa meta-pretrain",
    )
    p.add_argument("--preset")
    p.add_argument("--config")
    p.add_argument("--backbone", metavar="ARCH")
    p.add_argument("--weights", metavar="FILE|random")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--shots", type=arguments.integer(1), default=None)
    group.add_argument("--fraction", type=arguments.fraction)
    p.add_argument("--grad-reg", default="5", metavar="LAMBDA")
    p.add_argument("--grad-reg-mode", choices=("grmp", "prograd"))
    p.add_argument("--rounds", type=arguments.integer(1), default=10)
    p.add_argument("--epochs", type=arguments.integer(1))
    p.add_argument("--seed", type=arguments.seed)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE"
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(run=run)


def _args_for_build(args: argparse.Namespace) -> argparse.Namespace:
    ns = argparse.Namespace(
        **{
            k: None
            for k in (
                "protocol",
                "split_file",
                "batch_size",
                "lr",
                "precision",
                "device",
                "workers",
            )
        }
    )
    for key in (
        "dataset",
        "root",
        "config",
        "preset",
        "backbone",
        "weights",
        "shots",
        "fraction",
        "epochs",
        "seed",
        "grad_reg",
        "grad_reg_mode",
        "dataset_option",
        "on_error",
    ):
        setattr(ns, key, getattr(args, key))
    ns.overrides = list(args.overrides)
    return ns


def _command(args: argparse.Namespace, variant: str, out: Path) -> str:
    meta, reg, extra, _ = VARIANTS[variant]
    parts = ["mpiqa", "train", "--dataset", args.dataset, "--root", args.root]
    for flag in ("preset", "config", "backbone", "weights", "shots", "fraction", "epochs", "seed"):
        value = getattr(args, flag)
        if value is not None:
            parts += [f"--{flag}", str(value)]
    for item in args.dataset_option or []:
        parts += ["--dataset-option", item]
    if args.on_error is not None:
        parts += ["--on-error", args.on_error]
    parts += ["--grad-reg", args.grad_reg if reg else "off"]
    if meta:
        parts += ["--init-prompts", args.init_prompts]
    for item in [*args.overrides, *extra]:
        parts += ["--set", item]
    parts += ["--rounds", str(args.rounds), "--out", str(out)]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    base = build_config(_args_for_build(args))
    rows, commands = [], []
    for variant in args.variants:
        meta, reg, extra, description = VARIANTS[variant]
        config = copy.deepcopy(base)
        config.override(extra + ([] if reg else ["train.grad_reg=none"]))
        logger.warning("ablation %s: %s", variant, description)
        record = run_rounds(
            config, out / variant, args.rounds, init_prompts=args.init_prompts if meta else None
        )
        summary = record["summary"]
        if summary is None:  # a torchrun process but the first, which writes the table
            continue
        rows.append((variant, description, summary["srcc"], summary["plcc"]))
        commands.append(
            (
                variant,
                _command(args, variant, out / variant),
                record["split_seeds"],
                record["train_seed"],
            )
        )
    if not rows:
        return 0
    lines = [
        f"# Ablation on {args.dataset} ({args.shots or args.fraction or 'all'} {'shots' if args.shots else 'training images'}, {args.rounds} rounds)",
        "",
        "| variant | | SRCC median | SRCC mean ± std | PLCC median | PLCC mean ± std |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for variant, description, s, p in rows:
        lines.append(
            f"| {variant} | {description} | {s['median']:.4f} | {s['mean']:.4f} ± {s['std']:.4f} | {p['median']:.4f} | {p['mean']:.4f} ± {p['std']:.4f} |"
        )
    lines += [
        "",
        "Test parts of each round's split, scored once after model selection on its validation part.",
        "",
        "## Commands and seeds",
        "",
    ]
    for variant, command, seeds, train_seed in commands:
        lines += [
            f"- `{variant}`: split seeds {seeds}, training seed {train_seed}",
            f"  `{command}`",
        ]
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    (out / "ablation.json").write_text(
        jsonfile.dumps({v: {"srcc": s, "plcc": p} for v, _, s, p in rows}, indent=1)
    )
    print("\n".join(lines[: 4 + len(rows)]))
    return 0
