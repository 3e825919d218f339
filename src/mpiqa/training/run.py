"""From a configuration to a trained run directory: data, split, model, training."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mpiqa import distributed
from mpiqa.backbones.factory import build_random_clip, load_clip
from mpiqa.data.datasets import load_dataset
from mpiqa.data.images import UndecodableImagesError, require_decodable, undecodable
from mpiqa.data.loading import RecordDataset, TrainTransform
from mpiqa.data.records import IQADataset, Record
from mpiqa.data.splits import Split, few_shot, official_split, random_split
from mpiqa.errors import reported_once
from mpiqa.models.mmp_iqa import MultiModalPromptIQA
from mpiqa.prompts.vocab import DISTORTIONS, SCENES, distortion_class
from mpiqa.training.checkpoint import assign_tensors, backbone_record, write_json
from mpiqa.training.config import TrainConfig
from mpiqa.training.grad_reg import GradientRegulariser
from mpiqa.training.trainer import Trainer

logger = logging.getLogger(__name__)


def make_split(dataset: IQADataset, config: TrainConfig) -> Split:
    """The split a run trains on: a split file, the official split, or a seeded random
    one; then the few-shot subset of its training part."""
    data = config.data
    if data.split_file:
        split = Split.load(data.split_file)
    elif data.protocol == "official":
        split = official_split(dataset, seed=data.split_seed, val_fraction=data.val_fraction)
    else:
        split = random_split(
            dataset,
            seed=data.split_seed,
            test_fraction=data.test_fraction,
            val_fraction=data.val_fraction,
        )
    if data.shots is not None or data.fraction is not None:
        split = few_shot(split, shots=data.shots, fraction=data.fraction, seed=data.split_seed)
        if split.val:
            # N shots are N labels in all: a validation part would be more labels, so
            # few-shot runs train a fixed schedule and keep the last epoch.
            split.notes["val_dropped"] = len(split.val)
            split.val = []
    split.notes["labelled_images"] = len(split.train) + len(split.val)
    split.check_disjoint(dataset)
    return split


# Below this many images a validation SRCC is mostly noise (its standard error is about
# 1 / sqrt(n - 3)): it still selects, with a warning.
MIN_VAL_IMAGES = 20


def check_validation_part(records) -> None:
    """Refuse a validation part that cannot rank (all labels equal: SRCC is undefined,
    every epoch would tie at -inf); warn when it is too small to select with.

    Raises:
        ValueError: two or more validation images, all with the same label.
    """
    scores = [r.score for r in records]
    if not scores:
        return
    if len(scores) >= 2 and max(scores) == min(scores):
        raise ValueError(
            f"the validation part's {len(scores)} images all have the label {scores[0]:g}: "
            "no ranking to select an epoch by (use another split, or --shots for a fixed "
            "schedule without one)"
        )
    if len(scores) < MIN_VAL_IMAGES:
        logger.warning(
            "the validation part has only %d images: the epoch it selects is close to "
            "chance (use at least %d)",
            len(scores),
            MIN_VAL_IMAGES,
        )


def _shared_check(context: distributed.Context):
    def check(paths: Sequence[str | Path]) -> dict[str, str]:
        mine = undecodable(list(paths)[context.rank :: context.world_size])
        return {k: v for part in distributed.gather_objects(mine, context) for k, v in part.items()}

    return check


def check_decodable(
    dataset: IQADataset,
    split: Split,
    on_error: str = "fail",
    context: distributed.Context | None = None,
) -> None:
    """Decode every image of ``split`` once, before any training, so that a bad file
    stops the run at its start with all such files named, not partway through an epoch
    with one. ``on_error="skip"`` leaves them out of their parts instead (the split's
    ``notes["undecodable"]`` lists them, with the reason, in split.json). Processes
    of a data-parallel run each decode their share, and the first one logs.

    Raises:
        UndecodableImagesError: with ``on_error="fail"``, naming the first few and the count.
    """
    records = dataset.subset([k for part in split.parts().values() for k in part])
    try:
        require_decodable(
            [r.path for r in records],
            f"{dataset.name}, the run's split",
            "each named above; replace them, drop their rows, or pass --on-error skip to "
            "train without them",
            names=[r.key for r in records],
            check=_shared_check(context or distributed.Context()),
            log=context is None or context.is_main,
        )
        return
    except UndecodableImagesError as err:
        if on_error != "skip":
            raise
        failed = err.failed
    for name, part in split.parts().items():
        kept = [k for k in part if k not in failed]
        if len(kept) < len(part) and (context is None or context.is_main):
            logger.warning(
                "%s part: %d of %d images left out", name, len(part) - len(kept), len(part)
            )
        part[:] = kept
    split.notes["undecodable"] = failed
    split.notes["labelled_images"] = len(split.train) + len(split.val)


def build_model(config: TrainConfig) -> tuple[MultiModalPromptIQA, dict]:
    spec = config.backbone
    if spec.weights == "random":
        backbone = build_random_clip(spec.arch, seed=spec.seed)
    else:
        backbone = load_clip(spec.weights or spec.arch, arch=spec.arch)
    backbone.set_grad_checkpointing(config.train.grad_checkpointing)
    model = MultiModalPromptIQA(backbone, config.model).to(config.train.device)
    return model, backbone_record(spec.arch, spec.weights, spec.seed)


def _with_prompt_labels(records: list[Record]) -> list[Record]:
    """Map dataset distortion names onto the prompt vocabulary."""
    from dataclasses import replace

    return [replace(r, distortion=distortion_class(r.distortion)) for r in records]


def train_run(
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    init_prompts: str | Path | None = None,
    stop_after: int | None = None,
) -> dict:
    """Train one run into ``out_dir`` (split.json, config.json, best.*, last.*, log.jsonl).

    Under ``torchrun`` the processes train data-parallel on slices of each global batch
    (see :mod:`mpiqa.training.data_parallel`); rank 0 writes the files.

    Returns:
        {"best": best validation metrics and epoch, "split": sizes of the parts}.
    """
    out_dir = Path(out_dir)
    context = distributed.init_from_env(config.train.device)
    if context.active and config.train.device == "cuda":
        config.train.device = f"cuda:{context.local_rank}"
    torch.manual_seed(config.train.seed)
    # Under torchrun, a failure of these set-up steps is reported by the first process
    # alone; no block holds a collective that a process failing before it would miss.
    with reported_once(context):
        dataset = load_dataset(
            config.data.dataset,
            config.data.root,
            check_images=config.data.check_images,
            **config.data.options,
        )
        split = make_split(dataset, config)
    with reported_once(context):
        check_decodable(dataset, split, config.data.on_error, context)  # every process
        check_validation_part(dataset.subset(split.val))
    out_dir.mkdir(parents=True, exist_ok=True)
    if context.is_main:
        split.save(out_dir / "split.json")
        write_json(out_dir / "config.json", config.to_dict())
    with reported_once(context):
        model, backbone_info = build_model(config)
        if init_prompts is not None:
            load_prompt_init(model, init_prompts)
    size = config.data.image_size or model.image_size
    model.preprocess_options = preprocess_options(config, size)
    train_records = dataset.subset(split.train)
    if config.data.labels == "minmax":
        train_records = minmax_labels(train_records)
    train_set = RecordDataset(
        _with_prompt_labels(train_records),
        TrainTransform(
            size=size,
            resize=config.data.resize or size,
            flip=config.train.flip,
            squash=config.data.squash,
            stats=config.data.stats,
        ),  # fmt: skip
        distortions=DISTORTIONS,
        scenes=SCENES,
        seed=config.train.seed,
    )
    if context.is_main:
        logger.info(
            "%s: train %d, val %d, test %d images (%d labels read)%s",
            dataset.name,
            len(split.train),
            len(split.val),
            len(split.test),
            split.notes["labelled_images"],
            f"; {context.world_size} processes" if context.active else "",
        )
    backward = None
    if config.train.grad_reg:
        backward = GradientRegulariser(
            model, lam=config.train.grad_reg, mode=config.train.grad_reg_mode,
            scene_texts=config.train.grad_reg_texts,
        )  # fmt: skip
    trainer = Trainer(
        model, train_set, dataset.subset(split.val), config, out_dir, backbone_info, backward,
        context,
    )  # fmt: skip
    best = trainer.fit(resume=resume, stop_after=stop_after)
    return {
        "best": best,
        "split": {k: len(v) for k, v in split.parts().items()},
        "labelled_images": split.notes["labelled_images"],
    }


def preprocess_options(config: TrainConfig, size: int) -> dict:
    """How evaluation and scoring must prepare images for a model trained with
    ``config`` (empty: CLIP's own pipeline at ``size``)."""
    data = config.data
    options: dict = {}
    if data.resize and data.resize != size:
        options["resize"] = data.resize
    if data.squash:
        options["squash"] = True
    if data.stats != "clip":
        options["stats"] = data.stats
    return options


def minmax_labels(records: list[Record]) -> list[Record]:
    """Scores min-max normalised over these records (constant scores become 0.5)."""
    from dataclasses import replace

    from mpiqa.training.finetune import minmax

    labelled = [i for i, r in enumerate(records) if r.score is not None]
    scaled = minmax(np.array([records[i].score for i in labelled], dtype=np.float64))
    out = list(records)
    for i, value in zip(labelled, scaled, strict=True):
        out[i] = replace(records[i], score=float(value))
    return out


def load_prompt_init(model: MultiModalPromptIQA, path: str | Path) -> None:
    """Start from prompt tensors of another run (e.g. meta-pre-training). Tensors the
    model lacks (visual prompts in a text-only ablation) are skipped; shapes must match."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    names = {name for name, _ in model.named_parameters()}
    unused = sorted(set(tensors) - names)
    if len(unused) == len(tensors):
        raise ValueError(f"{path}: none of its tensors belongs to this model ({unused[:3]} ...)")
    if unused:
        logger.info("%s: not used by this model: %s", path, ", ".join(unused))
    assign_tensors(model, {k: v for k, v in tensors.items() if k in names}, path)
