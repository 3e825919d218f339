"""``mpiqa meta-pretrain``: meta-learn the prompts across distortion tasks (GRMP-IQA)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from mpiqa import distributed, errors
from mpiqa.cli import arguments
from mpiqa.cli.train import _flatten, _toml
from mpiqa.training.config import TrainConfig
from mpiqa.training.meta import MetaTrainer, task_source
from mpiqa.training.run import build_model

logger = logging.getLogger("mpiqa.cli.meta_pretrain")

_FLAGS = {
    "root": "meta.root", "dataset": "meta.dataset", "limit": "meta.limit", "epochs": "meta.epochs",
    "algorithm": "meta.algorithm", "inner_steps": "meta.inner_steps", "inner_lr": "meta.inner_lr",
    "outer_lr": "meta.outer_lr", "tasks_per_batch": "meta.tasks_per_batch", "seed": "meta.seed",
    "backbone": "backbone.arch", "weights": "backbone.weights", "device": "train.device",
}  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "meta-pretrain",
        help="meta-learn prompts over distortion tasks; start mpiqa train from them with --init-prompts",
        description="Tasks come from the synthetic generator over a folder of clean images "
        "(--root DIR), or from a labelled synthetic dataset grouped by distortion type "
        "(--dataset kadid10k|tid2013 --root DIR). Held-out distortion types select the result.",
    )
    p.add_argument(
        "--root", required=True, help="clean images, or the dataset folder with --dataset"
    )
    p.add_argument("--dataset", choices=("kadid10k", "tid2013"))
    p.add_argument("--limit", type=arguments.integer(1), help="use at most this many clean images")
    p.add_argument("--preset")
    p.add_argument("--config", help="TOML file; [model], [loss] and [meta] apply")
    p.add_argument("--backbone", metavar="ARCH")
    p.add_argument("--weights", metavar="FILE|random")
    p.add_argument("--epochs", type=arguments.integer(1))
    p.add_argument("--algorithm", choices=("reptile", "fomaml"))
    p.add_argument("--inner-steps", type=arguments.integer(1))
    p.add_argument("--inner-lr", type=arguments.positive_real)
    p.add_argument("--outer-lr", type=arguments.positive_real)
    p.add_argument("--tasks-per-batch", type=arguments.integer(1))
    p.add_argument("--seed", type=arguments.seed)
    p.add_argument("--device", type=arguments.device)
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE"
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> TrainConfig:
    """Preset, then --config, then flags and --set; only the prompts are meta-learned."""
    config = TrainConfig.preset(args.preset) if args.preset else TrainConfig()
    if args.config:
        config.override(_flatten(TrainConfig.load_raw(args.config)))
    flags = [
        f"{key}={_toml(getattr(args, name))}"
        for name, key in _FLAGS.items()
        if getattr(args, name, None) is not None
    ]
    config.override(flags + list(args.overrides))
    # Only the prompts are meta-learned, whatever fine-tuning will train later.
    config.override(
        [
            "model.train_visual_blocks=0",
            "model.train_text_blocks=0",
            "model.train_text_context=true",
            "model.train_visual_prompts=true",
        ]
    )
    return config


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    context = distributed.init_from_env(config.train.device)
    if context.active and config.train.device == "cuda":
        config.train.device = f"cuda:{context.local_rank}"
    try:
        torch.manual_seed(config.meta.seed)
        with errors.reported_once(context):  # under torchrun: one line, not one per process
            source = task_source(config.meta)  # a wrong --root is reported before the model loads
            model, backbone_info = build_model(config)
        trainer = MetaTrainer(
            model, source, config.meta, args.out, backbone_info, config.loss, context
        )
        result = trainer.fit(resume=args.resume)
    finally:
        distributed.shutdown(context)
    if context.is_main:
        print(
            f"meta-pre-training done: held-out query loss {result['best_val_query_loss']:.4f} "
            f"on {', '.join(result['val_types'])}; prompts in "
            f"{Path(args.out) / 'meta_prompts.safetensors'}"
        )
    return 0
