"""Writing checkpoints of trained prompt models: ``NAME.safetensors`` holds every prompt
tensor (frozen ones too: they may hold meta-learned or a starting model's values) and the
backbone's tensors that trained, ``NAME.json`` what is needed to rebuild the model around them (backbone
architecture, weights and their SHA-256, prompt configuration, metrics). Writes are
atomic: a crash leaves the previous checkpoint, never half of a new one. Reading lives in
:mod:`mpiqa.models.checkpoint` (re-exported here)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from mpiqa import distributed, jsonfile
from mpiqa.atomic import atomic_write
from mpiqa.backbones.pretrained import sha256_of
from mpiqa.errors import reported_once
from mpiqa.models.checkpoint import (  # noqa: F401  (reading lives below the models; re-exported)
    CHECKPOINT_FORMAT,
    assign_tensors,
    load_checkpoint,
    read_checkpoint_meta,
)
from mpiqa.models.mmp_iqa import MultiModalPromptIQA

logger = logging.getLogger(__name__)


def _atomic(path: Path, write) -> None:
    atomic_write(path, lambda tmp: write(str(tmp)))


def rewrite_log(path: Path, history: list[dict]) -> None:
    """``log.jsonl`` as one line per entry of a resumed run's committed ``history``."""
    _atomic(
        path, lambda tmp: Path(tmp).write_text("".join(jsonfile.dumps(e) + "\n" for e in history))
    )


def check_resumed_alike(epoch: int, out_dir: Path, context: distributed.Context) -> None:
    """Stop every process with one error line unless all resumed from the same saved epoch.

    Each process reads ``out_dir`` on its own machine. Over several machines without a
    shared file system, one that does not see the first one's run would start afresh
    while the others go on, and the run would hang in its next collective.

    Raises:
        ValueError: on the first process, naming each process's epoch (the others raise
            :class:`~mpiqa.distributed.ReportedByFirstProcess`).
    """
    if not context.active:
        return
    with reported_once(context):
        epochs = distributed.gather_objects(epoch, context)  # before anything can fail
        if len(set(epochs)) > 1:
            found = ", ".join(f"process {r}: epoch {e}" for r, e in enumerate(epochs))
            raise ValueError(
                f"--resume: the processes found different saved runs in {out_dir} ({found}; "
                "0 = none); over several machines, --out must be a folder they all share"
            )


def write_json(path: Path, data: dict) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(jsonfile.dumps(data, indent=1)))


def backbone_record(arch: str, weights: str | None, seed: int) -> dict[str, Any]:
    """How to rebuild the backbone: architecture, weights, and the weights' SHA-256."""
    record: dict[str, Any] = {"arch": arch, "weights": weights, "seed": seed, "sha256": None}
    if weights and weights != "random" and Path(weights).is_file():
        record["sha256"] = sha256_of(weights)
        record["weights"] = str(Path(weights).resolve())
    return record


def save_checkpoint(
    path: str | Path, model: MultiModalPromptIQA, backbone: dict, extra: dict | None = None
) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` beside it. Returns the tensor file."""
    path = Path(path).with_suffix(".safetensors")
    tensors = {k: v.contiguous().cpu() for k, v in model.checkpoint_state_dict().items()}
    _atomic(path, lambda tmp: save_file(tensors, tmp, metadata={"format": CHECKPOINT_FORMAT}))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model": "mmp-iqa",
        "mmp": model.config.to_dict(),
        "backbone": backbone,
        "image_size": model.image_size,
        "preprocess": dict(model.preprocess_options),
        **(extra or {}),
    }
    if model.labelled_families is not None:  # a loaded model's (a fine-tuning's start)
        meta["labelled_families"] = list(model.labelled_families)
    write_json(path.with_suffix(".json"), meta)
    return path
