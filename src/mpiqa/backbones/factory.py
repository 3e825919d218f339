"""The one entry point that builds a CLIP backbone: :func:`load_clip`."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from mpiqa.backbones.clip import CLIP
from mpiqa.backbones.config import Activation, CLIPConfig, get_config
from mpiqa.backbones.convert import (
    CheckpointError,
    embedded_config,
    read_checkpoint,
    resolve_config,
)
from mpiqa.backbones.pretrained import default_tag, get_pretrained, resolve_pretrained

logger = logging.getLogger(__name__)

DEFAULT_ARCH = "ViT-B-32"
RANDOM = "random"


def build_random_clip(arch: str | CLIPConfig = DEFAULT_ARCH, seed: int = 0) -> CLIP:
    """A randomly initialised CLIP (OpenAI's initialisation), the same for the same seed.
    The global random state is left untouched."""
    config = arch if isinstance(arch, CLIPConfig) else get_config(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIP(config).eval()


def _split_tag(source: str) -> tuple[str, str]:
    name, _, tag = source.partition(":")
    return name, tag or default_tag(name)


def load_clip(
    source: str | Path = DEFAULT_ARCH,
    arch: str | CLIPConfig | None = None,
    *,
    act: Activation | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> CLIP:
    """Load a CLIP backbone.

    Args:
        source: a checkpoint path (OpenAI TorchScript ``.pt``; open_clip ``.pt``/``.bin``/
            ``.safetensors``; a transformers CLIP directory or its weights file), a registered
            architecture name with optional tag (``"ViT-B/16"``, ``"ViT-B-16:openai"``,
            open_clip's ``"ViT-B-32:laion2b_e16"``, ``"RN50:yfcc15m"``) for its registered
            pretrained weights (verified by SHA-256, with the activation they were trained
            with), or ``"random"`` for random weights.
        arch: the architecture (name or config). Required with ``"random"`` (default
            ViT-B-32); for a checkpoint it fixes heads and activation, which the weights
            alone do not tell, and its shapes are checked against the file.
        act: override the activation (``"gelu"`` for open_clip's LAION-trained models).
        device: where to put the model.
        seed: seed of the random initialisation with ``"random"``.

    Returns:
        The backbone in eval mode, float32.

    Raises:
        FileNotFoundError: the path does not exist (``WeightsNotFoundError`` when
            registered weights are neither cached nor downloadable).
        KeyError: unknown architecture name.
        CheckpointError: the file is not a CLIP ViT checkpoint, or does not match ``arch``.
    """
    hint = get_config(arch) if isinstance(arch, str) else arch
    source_str = str(source)
    if source_str == RANDOM:
        config = hint or get_config(DEFAULT_ARCH)
        model = build_random_clip(replace(config, act=act) if act else config, seed=seed)
        return model.to(device)
    path = Path(source)
    if not path.exists():
        name, tag = _split_tag(source_str)
        if get_pretrained(name, tag) is None:
            try:
                get_config(name)
            except KeyError:
                raise FileNotFoundError(
                    f"{source_str!r} is neither a file nor a known architecture"
                ) from None
        path = resolve_pretrained(name, tag)
        hint = hint or get_config(name)
        entry = get_pretrained(name, tag)
        act = act or (entry.act if entry is not None else None)
    embedded = embedded_config(path)
    hint = hint or embedded
    state, fmt, hf_config = read_checkpoint(path)
    try:
        config = resolve_config(state, fmt, hint=hint, hf_config=hf_config)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    if act is not None:
        config = replace(config, act=act)
    model = CLIP(config)
    result = model.load_state_dict(state, strict=False)
    # BatchNorm's step counters (ResNet towers) matter only to training in train mode
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {result.unexpected_keys[:5]} ({len(result.unexpected_keys)})"
        )
    logger.info(
        "loaded %s weights from %s (architecture %s)",
        "mpiqa" if embedded else fmt,
        path,
        config.name or "inferred",
    )
    return model.float().eval().to(device)
