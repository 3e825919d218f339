"""``mpiqa finetune``: adapt a trained prompt model (the shipped default unless
``--checkpoint``) to a few labelled images of one's own, offline."""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

from mpiqa.cli import arguments
from mpiqa.models.registry import DEFAULT_MODEL

# The shipped prompt model fine-tuning starts from (mpiqa-small, the scoring default, is a
# zero-shot readout with no prompts: see its model card).
FINETUNE_START = "mpiqa-tiny"

logger = logging.getLogger("mpiqa.cli.finetune")

# command-line flag -> FinetuneConfig field
_OPTIONS = (
    "steps", "select", "folds", "lr", "weight_decay", "optimizer", "momentum", "batch_size",
    "rank_weight", "quality_weight", "anchor", "train_visual_blocks", "train_text_blocks", "seed",
    "visual_prompt_blocks", "grad_reg", "grad_reg_mode",
)  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="adapt the shipped prompt model mpiqa-tiny (or --checkpoint) to your own labelled images",
        description="Fine-tune a trained prompt model on labelled images: a CSV of image "
        "paths and scores (paths relative to the CSV's folder), or a dataset adapter. "
        "Every label counts: --shots N reads N labels in all, no validation part from "
        "elsewhere. Prints the SRCC of the fine-tuned model, the starting model and the "
        "--reference model, cross-validated on the same folds within the labels, and writes RUN/best.safetensors for `mpiqa score --checkpoint`. "
        "With --rounds R (and --shots N) it runs the N-shot benchmark protocol instead.",
    )
    arguments.add_label_file(p)
    p.add_argument("--dataset", help="a dataset adapter instead of a CSV (mpiqa list-datasets)")
    p.add_argument("--root", help="the dataset's folder")
    arguments.add_dataset_option(p, "; with --dataset")
    p.add_argument(
        "--checkpoint", metavar="FILE",
        help="the prompt model to start from (default: the shipped mpiqa-tiny: the default "
        "mpiqa-small has no prompts to adapt)",
    )  # fmt: skip
    p.add_argument(
        "--reference", default=DEFAULT_MODEL, metavar="MODEL",
        help="a model scored on the same labels without fine-tuning, to show whether "
        f"fine-tuning beat it (default: {DEFAULT_MODEL}, what `mpiqa score` uses; "
        "'none' to skip)",
    )  # fmt: skip
    p.add_argument(
        "--shots",
        type=arguments.integer(1),
        help="use N labelled images (drawn with the split seed)",
    )
    p.add_argument(
        "--rounds", type=arguments.integer(1), default=1,
        help="N-shot benchmark: R seeded 80/20 splits, N shots from each training part, "
        "scored on its test part next to the starting model and the --reference model "
        "(needs --shots)",
    )  # fmt: skip
    p.add_argument("--split-seed", type=arguments.seed, default=0)
    p.add_argument("--test-fraction", type=arguments.split_fraction, default=0.2)
    p.add_argument(
        "--steps", type=arguments.integer(1), help="optimisation steps of the fixed schedule"
    )
    p.add_argument(
        "--select", choices=("fixed", "cv"),
        help="fixed: train --steps steps; cv: pick the step count (0 = no change) by "
        "k-fold cross-validation within the labels",
    )  # fmt: skip
    p.add_argument("--folds", type=arguments.integer(2))
    p.add_argument("--lr", type=arguments.positive_real)
    p.add_argument("--weight-decay", type=arguments.non_negative_real)
    p.add_argument("--optimizer", choices=("adamw", "sgd"))
    p.add_argument("--momentum", type=arguments.real(0.0, 1.0))
    p.add_argument(
        "--batch-size", type=arguments.batch_size, help="default: all labelled images in one batch"
    )
    p.add_argument("--rank-weight", type=arguments.non_negative_real)
    p.add_argument("--quality-weight", type=arguments.non_negative_real)
    p.add_argument(
        "--anchor", type=arguments.non_negative_real, help="L2 pull towards the starting tensors"
    )
    p.add_argument("--train-visual-blocks", type=arguments.non_negative, metavar="K")
    p.add_argument("--train-text-blocks", type=arguments.non_negative, metavar="K")
    p.add_argument(
        "--visual-prompt-blocks", type=arguments.non_negative, metavar="K",
        help="adapt the visual prompts of the last K prompted blocks (0: none)",
    )  # fmt: skip
    p.add_argument(
        "--grad-reg", type=arguments.non_negative_real, metavar="LAMBDA",
        help="GRMP-IQA's quality-aware gradient regularisation, e.g. 5",
    )  # fmt: skip
    p.add_argument("--grad-reg-mode", choices=("grmp", "prograd"))
    p.add_argument("--seed", type=arguments.seed)
    p.add_argument("--device", default="cpu", type=arguments.device)
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.set_defaults(run=run)


def _dataset(args: argparse.Namespace):
    from mpiqa.data.datasets import load_dataset

    labels = arguments.label_file(args)
    if labels:
        root, options = labels
        dataset = load_dataset("csv", root, **options)
        return dataset, {"labels": str(Path(args.labels).resolve()), **options,
                         "scale": list(dataset.scale)}  # fmt: skip
    if not args.dataset or not args.root:
        raise ValueError("give a label file, or --dataset and --root")
    from mpiqa.options import parse_key_values

    options = parse_key_values(args.dataset_option, "--dataset-option")
    dataset = load_dataset(args.dataset, args.root, **options)
    return dataset, {"dataset": args.dataset, "root": str(Path(args.root).resolve()),
                     "options": options}  # fmt: skip


def config_from_args(args: argparse.Namespace):
    from mpiqa.training.finetune import FinetuneConfig

    values = {k: getattr(args, k) for k in _OPTIONS if getattr(args, k, None) is not None}
    return FinetuneConfig.from_dict(values)


def run(args: argparse.Namespace) -> int:
    from mpiqa.backbones.pretrained import packaged_path
    from mpiqa.models.registry import create_model
    from mpiqa.training.checkpoint import load_checkpoint, read_checkpoint_meta
    from mpiqa.training.few_shot import fit_labels, run_rounds

    config = config_from_args(args)
    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    if args.rounds > 1 and args.shots is None:
        raise ValueError("--rounds needs --shots N (labels per round)")
    start = (
        Path(args.checkpoint) if args.checkpoint else packaged_path(f"{FINETUNE_START}.safetensors")
    )
    backbone_info = read_checkpoint_meta(start)["backbone"]
    dataset, data = _dataset(args)
    # what a later reader needs to know which labels trained the checkpoint
    data = {**data, "start": str(start.resolve()), "shots": args.shots,
            "split_seed": args.split_seed, "reference": args.reference}  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def make_model():
        return load_checkpoint(start, device=args.device)

    reference = None
    if args.reference != "none":
        reference = create_model(args.reference, device=args.device)
    # recorded as data.trained_on in finetune.json / summary.json
    data["trained_on"] = _in_sample([r for r in dataset if r.score is not None], args, start)
    if args.rounds > 1:
        record = run_rounds(
            make_model, backbone_info, dataset, config, args.shots, args.rounds, out,
            split_seed=args.split_seed, test_fraction=args.test_fraction, reference=reference,
            data=data,
        )  # fmt: skip
        print(_rounds_table(record, args.reference))
        return 0
    records = [r for r in dataset if r.score is not None]
    if args.shots is not None:
        if not 0 < args.shots <= len(records):
            raise ValueError(f"--shots {args.shots}: the labels hold {len(records)} images")
        records = random.Random(args.split_seed).sample(records, args.shots)
    result = fit_labels(make_model(), backbone_info, records, config, out, reference, data)
    compared = f", {args.reference} as shipped {result.reference_cv_srcc:.4f}" if reference else ""
    print(
        f"{result.labelled_images} labelled images; SRCC cross-validated within them "
        f"({min(config.folds, result.labelled_images // 3)} folds): fine-tuned "
        f"{result.cv_srcc:.4f}, starting model {result.cv_zero_shot_srcc:.4f}{compared} "
        f"({result.chosen_steps} steps); checkpoint {out / 'best.safetensors'}"
    )
    if result.cv_srcc <= result.cv_zero_shot_srcc:
        logger.warning(
            "fine-tuning did not beat the starting model within your labels "
            "(%.4f vs %.4f): score with the starting model, or add labels",
            result.cv_srcc,
            result.cv_zero_shot_srcc,
        )
    if reference is not None and result.cv_srcc <= result.reference_cv_srcc:
        logger.warning(
            "%s ranks your labels better without fine-tuning (%.4f vs %.4f): score with it "
            "(mpiqa score --model %s)",
            args.reference,
            result.reference_cv_srcc,
            result.cv_srcc,
            args.reference,
        )
    return 0


def _in_sample(records, args: argparse.Namespace, start: Path) -> dict[str, int]:
    """How many labels are among the images that trained the starting model and the
    reference (the shipped models trained on BIQ2021), each with a warning: figures on
    them are in-sample (the fine-tuned model's too, when the starting model's are)."""
    from mpiqa.cli.evaluate import shipped_training_images
    from mpiqa.evaluation.evaluate import count_trained_on, training_images

    start_name = str(start) if args.checkpoint else FINETUNE_START
    models = {
        start_name: (
            training_images(start) if args.checkpoint else shipped_training_images(FINETUNE_START)
        ),
        args.reference: shipped_training_images(args.reference),
    }
    counts = {}
    for name, trained_on in models.items():
        if trained_on is None:
            continue
        counts[name] = seen = count_trained_on(records, trained_on)
        if seen:
            role = "the starting model" if name == start_name else "the reference"
            also = " and the fine-tuned model's" if name == start_name else ""
            logger.warning(
                "%d of the %d labelled images trained %s (%s): its figures on them%s are "
                "in-sample, optimistic for other images",
                seen, len(records), name, role, also,
            )  # fmt: skip
    return counts


def _rounds_table(record: dict, reference: str) -> str:
    s = record["summary"]
    lines = [
        f"{record['dataset']}: {record['shots']}-shot, {len(record['rounds'])} rounds "
        f"({s['labelled_images']} labels per round)",
        "| | median | mean ± std |",
        "| --- | ---: | ---: |",
    ]
    rows = [("srcc", "fine-tuned SRCC"), ("zero_shot_srcc", "starting model SRCC")]
    gains = [("gain_srcc", "gain", "rounds_below_zero_shot", "the starting model")]
    if "reference_srcc" in s:
        rows.append(("reference_srcc", f"{reference} as shipped SRCC"))
        gains.append(("gain_over_reference", f"gain over {reference}", "rounds_below_reference",
                      reference))  # fmt: skip
    for key, name in rows:
        v = s[key]
        lines.append(f"| {name} | {v['median']:.4f} | {v['mean']:.4f} ± {v['std']:.4f} |")
    for key, name, _, _ in gains:
        v = s[key]
        lines.append(f"| {name} | {v['median']:+.4f} | {v['mean']:+.4f} ± {v['std']:.4f} |")
    for key, _, below, name in gains:
        p = s[key]["wilcoxon_p"]
        lines.append(
            f"rounds below {name}: {s[key][below]}; "
            f"Wilcoxon p = {'n/a' if p is None else f'{p:.4f}'}"
        )
    return "\n".join(lines)
