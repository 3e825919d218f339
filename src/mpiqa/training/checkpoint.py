"""Checkpoints of trained prompt models: ``NAME.safetensors`` holds only the trained
tensors, ``NAME.json`` what is needed to rebuild the model around them (backbone
architecture, weights and their SHA-256, prompt configuration, metrics). Writes are
atomic: a crash leaves the previous checkpoint, never half of a new one."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mpiqa.backbones.factory import build_random_clip, load_clip
from mpiqa.backbones.pretrained import sha256_of, verify_sha256
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "mpiqa-checkpoint/1"


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: dict) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1, default=str)))


def backbone_record(arch: str, weights: str | None, seed: int) -> dict[str, Any]:
    """How to rebuild the backbone: architecture, weights, and the weights' SHA-256."""
    record: dict[str, Any] = {"arch": arch, "weights": weights, "seed": seed, "sha256": None}
    if weights and weights != "random" and Path(weights).is_file():
        record["sha256"] = sha256_of(weights)
        record["weights"] = str(Path(weights).resolve())
    return record


def assign_tensors(
    model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | Path = ""
) -> None:
    """Copy ``tensors`` into the model's parameters of the same names, in place.

    Raises:
        ValueError: a name the model lacks, or a shape that differs (naming ``source``).
    """
    params = dict(model.named_parameters())
    for name, value in tensors.items():
        if name not in params:
            raise ValueError(f"{source}: the model has no tensor {name}")
        if params[name].shape != value.shape:
            raise ValueError(
                f"{source}: tensor {name} {tuple(value.shape)} does not fit this model {tuple(params[name].shape)}"
            )
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)


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


def read_checkpoint_meta(path: str | Path) -> dict:
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: its configuration {meta_path.name} is missing beside it")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{meta_path}: not an mpiqa checkpoint (format {meta.get('format')!r})")
    return meta


def load_checkpoint(
    path: str | Path, weights: str | None = None, device: str | torch.device = "cpu", **model_kwargs
) -> MultiModalPromptIQA:
    """Rebuild a trained prompt model.

    Args:
        path: the ``.safetensors`` file written by training.
        weights: backbone weights to use instead of those the checkpoint names (for a
            copy elsewhere); checked against the recorded SHA-256 when one is recorded.
        **model_kwargs: e.g. ``crop="multi"``.

    Raises:
        FileNotFoundError, ValueError: missing or foreign files; ChecksumError: the
            backbone weights differ from those the prompts were trained on.
    """
    meta = read_checkpoint_meta(path)
    spec = meta["backbone"]
    source = weights or spec.get("weights")
    if source == "random":
        logger.warning(
            "%s was trained on a randomly initialised backbone: its scores mean nothing", path
        )
        backbone = build_random_clip(spec["arch"], seed=int(spec.get("seed", 0)))
    else:
        if source and spec.get("sha256") and Path(source).is_file():
            verify_sha256(source, spec["sha256"])
        backbone = load_clip(source or spec["arch"], arch=spec["arch"])
    model = MultiModalPromptIQA(backbone, MMPConfig.from_dict(meta["mmp"]), **model_kwargs)
    tensors = load_file(str(path))
    expected = {name for name, _ in model.trainable_parameters()}
    if set(tensors) != expected:
        raise ValueError(
            f"{path}: tensors do not match the model: missing {sorted(expected - set(tensors))[:5]}, "
            f"unexpected {sorted(set(tensors) - expected)[:5]}"
        )
    assign_tensors(model, tensors, path)
    model.preprocess_options = _preprocess_options(meta.get("preprocess") or {}, path)
    loss = (meta.get("config") or {}).get("loss")
    if isinstance(loss, dict):
        model.labelled_families = tuple(
            f for f in ("distortion", "scene") if float(loss.get(f, 0) or 0) > 0
        )
    return model.to(device).eval()


def _preprocess_options(options: dict, path) -> dict:
    known = {"resize": int, "squash": bool, "stats": str}
    if not isinstance(options, dict) or set(options) - set(known):
        raise ValueError(f"{path}: unknown preprocessing {options!r}")
    if options.get("stats", "clip") not in ("clip", "imagenet"):
        raise ValueError(f"{path}: unknown normalisation {options['stats']!r}")
    return {k: known[k](v) for k, v in options.items()}
