"""``mpiqa train``: prompt training of the multi-modal prompt model, one run or n rounds."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from mpiqa import distributed
from mpiqa.cli import arguments
from mpiqa.evaluation.report import rounds_table
from mpiqa.training.config import TrainConfig

logger = logging.getLogger("mpiqa.cli.train")

# command-line flag -> config option
_FLAGS = {
    "dataset": "data.dataset", "root": "data.root", "protocol": "data.protocol",
    "split_file": "data.split_file", "shots": "data.shots", "fraction": "data.fraction",
    "backbone": "backbone.arch", "weights": "backbone.weights", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "lr": "optim.lr", "seed": "train.seed",
    "precision": "train.precision", "device": "train.device", "workers": "train.workers",
    "on_error": "data.on_error",
}  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train prompts on an IQA dataset (model selection on a validation part)",
        description="Train the multi-modal prompt model. Options come from --config (TOML), "
        "then these flags, then --set section.key=value overrides.",
    )
    p.add_argument("--dataset", help="dataset adapter (mpiqa list-datasets)")
    p.add_argument("--root", help="dataset folder")
    arguments.add_dataset_option(p, "; recorded as data.options")
    p.add_argument("--config", help="TOML configuration file (see configs/)")
    p.add_argument(
        "--preset", help="a shipped configuration, e.g. grmp-paper (--config then overrides it)"
    )
    p.add_argument("--backbone", metavar="ARCH")
    p.add_argument("--weights", metavar="FILE|random")
    p.add_argument("--protocol", choices=("random", "official"))
    p.add_argument("--split-file", help="train on this saved split")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--shots", type=arguments.integer(1), help="few-shot: this many training images"
    )
    group.add_argument(
        "--fraction", type=arguments.fraction, help="few-shot: this fraction of the training part"
    )
    p.add_argument("--epochs", type=arguments.integer(1))
    p.add_argument("--batch-size", type=arguments.batch_size)
    p.add_argument("--lr", type=arguments.positive_real)
    p.add_argument("--seed", type=arguments.seed)
    p.add_argument(
        "--precision", choices=("fp32", "bf16", "fp16"),
        help="autocast of the forward pass; fp16 scales the loss (dynamic loss scaling)",
    )  # fmt: skip
    p.add_argument("--device", type=arguments.device)
    p.add_argument("--workers", type=arguments.non_negative)
    arguments.add_training_on_error(p)
    p.add_argument(
        "--init-prompts",
        metavar="FILE",
        help="start from these prompt tensors (e.g. meta-pre-training)",
    )
    p.add_argument(
        "--grad-reg",
        metavar="LAMBDA|off",
        help="quality-aware gradient regularisation (GRMP-IQA), e.g. 5",
    )
    p.add_argument(
        "--grad-reg-mode",
        choices=("grmp", "prograd"),
        help="grmp: the published rule; prograd: project only on conflict",
    )
    p.add_argument(
        "--grad-checkpointing",
        action="store_true",
        help="recompute transformer activations in backward: less memory, slower steps",
    )
    p.add_argument(
        "--rounds",
        type=arguments.integer(1),
        default=1,
        help="n-round protocol: split seeds seed..seed+n-1, test metrics summarised",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out, with its own config.json (other flags "
        "may only repeat it, unless --allow-changes)",
    )
    p.add_argument(
        "--allow-changes",
        action="store_true",
        help="with --resume: accept flags that change the run's saved settings",
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE"
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.set_defaults(run=run)


def build_config(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    if base is not None:
        config = base
    else:
        config = TrainConfig.preset(args.preset) if getattr(args, "preset", None) else TrainConfig()
    if args.config:
        config.override(_flatten(TrainConfig.load_raw(args.config)))
    flags = [
        f"{key}={_toml(getattr(args, name))}"
        for name, key in _FLAGS.items()
        if getattr(args, name, None) is not None
    ]
    grad_reg = getattr(args, "grad_reg", None)
    if grad_reg is not None:
        off = grad_reg.lower() in ("off", "none", "0")
        flags.append("train.grad_reg=none" if off else f"train.grad_reg={float(grad_reg)}")
    if getattr(args, "grad_checkpointing", False):
        flags.append("train.grad_checkpointing=true")
    if getattr(args, "grad_reg_mode", None):
        flags.append(f'train.grad_reg_mode="{args.grad_reg_mode}"')
    config.override(flags + list(args.overrides))
    if getattr(args, "dataset_option", None):
        from mpiqa.options import parse_key_values

        config.data.options.update(parse_key_values(args.dataset_option, "--dataset-option"))
    if not config.data.dataset or not config.data.root:
        raise ValueError(
            "--dataset and --root are required (or data.dataset / data.root in --config)"
        )
    return config


def _flatten(data: dict) -> list[str]:
    """TOML tables -> section.key=value overrides (so a --config file overrides a preset)."""
    return [
        f"{section}.{key}={_toml(value)}"
        for section, values in data.items()
        for key, value in values.items()
    ]


def _toml(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if value is None:
        return "none"
    return (
        json.dumps(value)
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )


# Settings that may differ on resume without changing what is trained: where and how fast.
_RUNTIME_KEYS = {("train", "device"), ("train", "workers"), ("train", "eval_batch_size")}


def _resume_config(args: argparse.Namespace, out: Path) -> TrainConfig:
    """The run's own config.json; flags may repeat it but not change it (unless
    --allow-changes): a resumed run that silently trains on other settings mixes two runs.
    """
    saved_path = out / "config.json"
    saved = TrainConfig.from_dict(json.loads(saved_path.read_text()), source=str(saved_path))
    if not _config_flags_given(args):
        return saved
    wanted = build_config(args, base=TrainConfig.from_dict(saved.to_dict()))
    changed = [
        f"{section}.{key}: {old!r} -> {new!r}"
        for section, values in saved.to_dict().items()
        if isinstance(values, dict)
        for key, old in values.items()
        if (section, key) not in _RUNTIME_KEYS
        and (new := wanted.to_dict()[section].get(key)) != old
    ]
    if changed and not args.allow_changes:
        raise ValueError(
            f"--resume: the flags change {out}'s saved settings ({'; '.join(changed[:5])}); "
            "resume without them, or pass --allow-changes"
        )
    return wanted


def _config_flags_given(args: argparse.Namespace) -> bool:
    given = [getattr(args, name, None) is not None for name in _FLAGS]
    given += [bool(getattr(args, a, None)) for a in ("config", "preset", "overrides")]
    given += [bool(getattr(args, "dataset_option", None)), bool(getattr(args, "grad_reg", None))]
    return any(given)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.resume and not (out / "config.json").is_file() and not args.dataset:
        # read before the processes can talk: a machine that does not see the first
        # one's run can only say so (the others wait for it until torch's timeout)
        shared = (
            "; over several machines, --out must be a folder they all share"
            if distributed.spans_machines()
            else ""
        )
        raise FileNotFoundError(
            f"--resume: {out} holds no training run (no config.json); "
            f"start one with --dataset and --root{shared}"
        )
    if args.resume and (out / "config.json").is_file():
        config = _resume_config(args, out)
    else:
        if not args.resume and (out / "log.jsonl").is_file():
            raise ValueError(
                f"{out} holds a training run already: --resume to continue it, or choose "
                "another --out (two runs in one folder would mix their logs)"
            )
        config = build_config(args)
    try:
        return _run(args, config, out)
    finally:
        distributed.shutdown_if_initialized()


def _run(args: argparse.Namespace, config: TrainConfig, out: Path) -> int:
    from mpiqa.training.rounds import run_rounds
    from mpiqa.training.run import train_run

    if args.rounds <= 1:
        result = train_run(config, out, resume=args.resume, init_prompts=args.init_prompts)
        best = result["best"]
        if distributed.env_rank() == 0:
            # the result goes to stdout (not a WARNING log line): a successful run says so
            srcc = best.get("srcc", float("nan"))
            selected = (
                f"best validation SRCC {srcc:.4f} at epoch {best.get('epoch')}"
                if math.isfinite(srcc)
                else f"no validation SRCC (too few validation images): the last epoch, "
                f"{best.get('epoch')}, is kept"
            )
            print(f"{selected}; checkpoint {out / 'best.safetensors'}")
        return 0
    record = run_rounds(
        config, out, args.rounds, init_prompts=args.init_prompts, resume=args.resume
    )
    if record["summary"] is not None:  # the first process's, under torchrun
        print(rounds_table(record["summary"]))
    return 0
