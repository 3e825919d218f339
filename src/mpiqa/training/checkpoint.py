"""Writing checkpoints of trained prompt models: ``NAME.safetensors`` holds only the
trained tensors, ``NAME.json`` what is needed to rebuild the model around them (backbone
architecture, weights and their SHA-256, prompt configuration, metrics). Writes are
atomic: a crash leaves the previous checkpoint, never half of a new one. Reading lives in
:mod:`mpiqa.models.checkpoint` (re-exported here)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from mpiqa import jsonfile
from mpiqa.atomic import atomic_write
from mpiqa.backbones.pretrained import sha256_of
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
    tensors = {k: v.contiguous().cpu() for k, v in model.trained_state_dict().items()}
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
    write_json(path.with_suffix(".json"), meta)
    return path
