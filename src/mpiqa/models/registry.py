"""Registry of quality models: ``create_model`` and ``list_models``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from mpiqa.backbones.factory import DEFAULT_ARCH, load_clip
from mpiqa.models.base import IQAModel
from mpiqa.models.clip_iqa import CLIPIQA, DEFAULT_PAIRS, ENSEMBLE_PAIRS

ModelFactory = Callable[..., IQAModel]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    factory: ModelFactory


_MODELS: dict[str, ModelEntry] = {}
# names users of other toolboxes type (pyiqa's "clipiqa") -> ours
ALIASES = {
    "clipiqa": "clip-iqa",
    "clip_iqa": "clip-iqa",
    "mpiqa_tiny": "mpiqa-tiny",
    "mpiqa_small": "mpiqa-small",
}


def register_model(name: str, description: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator adding a factory ``f(backbone, weights, seed, **kwargs) -> IQAModel``."""

    def add(factory: ModelFactory) -> ModelFactory:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelEntry(name, description, factory)
        return factory

    return add


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_MODELS)


def model_descriptions() -> dict[str, str]:
    return {name: _MODELS[name].description for name in list_models()}


def create_model(
    name: str,
    weights: str | Path | None = None,
    backbone: str | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    **kwargs,
) -> IQAModel:
    """Build a quality model.

    Args:
        name: one of :func:`list_models`, or an alias of one (:data:`ALIASES`, e.g.
            pyiqa's ``"clipiqa"``).
        weights: backbone weights: a checkpoint path, ``"random"`` (seeded random weights,
            for tests and benchmarks: their scores mean nothing), or ``None`` for the
            registered pretrained weights of ``backbone``.
        backbone: backbone architecture (e.g. ``"ViT-B/32"``); with a checkpoint path it
            may be left out and is read from the file.
        device: ``"cpu"``, ``"cuda"``, ... or ``"auto"`` (CUDA when available).
        seed: seed of ``weights="random"``.
        **kwargs: passed to the model (e.g. ``crop="multi"``).

    Raises:
        KeyError: unknown model name.
        FileNotFoundError: weights not found (``WeightsNotFoundError`` says where to put them).
    """
    name = ALIASES.get(name, name)
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    model = _MODELS[name].factory(backbone=backbone, weights=weights, seed=seed, **kwargs)
    return model.to(resolve_device(device)).eval()


def resolve_device(device: str | torch.device) -> torch.device:
    """The device to run on: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, or
    ``"auto"`` (the first CUDA device when one is available, else the CPU).

    Raises:
        ValueError: a device string torch does not know, a kind mpiqa does not run on
            (``meta``, ``xla`` ...), or one this machine lacks (the message says which).
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    runs_on = "mpiqa runs on cpu, cuda, cuda:N, mps or auto"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):  # torch's message lists every backend it knows
        raise ValueError(f"unknown device {device!r}: {runs_on}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA device(s)")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r}: MPS is not available on this machine")
    elif resolved.type != "cpu":
        raise ValueError(f"device {device!r}: {runs_on}")
    return resolved


def _load_backbone(backbone: str | None, weights: str | Path | None, seed: int):
    if weights is None:
        return load_clip(backbone or DEFAULT_ARCH)
    if str(weights) == "random":
        return load_clip("random", arch=backbone or DEFAULT_ARCH, seed=seed)
    return load_clip(weights, arch=backbone)


@register_model("clip-iqa", "zero-shot CLIP-IQA: p('Good photo.') against 'Bad photo.'")
def _clip_iqa(backbone=None, weights=None, seed=0, **kwargs) -> IQAModel:
    return CLIPIQA(_load_backbone(backbone, weights, seed), pairs=DEFAULT_PAIRS, **kwargs)


@register_model("clip-iqa-ensemble", "zero-shot CLIP-IQA averaged over 6 quality antonym pairs")
def _clip_iqa_ensemble(backbone=None, weights=None, seed=0, **kwargs) -> IQAModel:
    return CLIPIQA(_load_backbone(backbone, weights, seed), pairs=ENSEMBLE_PAIRS, **kwargs)


DEFAULT_MODEL = "mpiqa-small"
# A CLIP named by --backbone / --weights without --model is scored zero-shot by this one.
ZERO_SHOT_MODEL = "clip-iqa"


def model_for(name: str | None, backbone: str | None, weights: str | None) -> str:
    """The model a command uses: ``name`` if given; else :data:`ZERO_SHOT_MODEL` when a
    CLIP is named by ``backbone`` or ``weights``; else :data:`DEFAULT_MODEL`."""
    return name or (ZERO_SHOT_MODEL if backbone or weights else DEFAULT_MODEL)


def _packaged_model(name: str, **kwargs) -> IQAModel:
    """A prompt model whose weights ship in ``mpiqa/weights/`` (built by its recipe)."""
    # Imported here: training modules are not needed to build the zero-shot models.
    from mpiqa.backbones.pretrained import packaged_path
    from mpiqa.models.checkpoint import load_checkpoint

    return load_checkpoint(packaged_path(f"{name}.safetensors"), **kwargs)


def _refuse_other_backbone(name: str, backbone, weights) -> None:
    if backbone not in (None, name) or weights is not None:
        raise ValueError(
            f"{name} ships its own weights: leave out --backbone/--weights "
            "(score another trained prompt model with --checkpoint)"
        )


@register_model(
    "mpiqa-small",
    "offline default: mpiqa's compact CLIP (EfficientNet-Lite0 stem at 384 x 384), zero-shot "
    "over the five quality words it was pre-trained with, averaged over five seeds' towers "
    "on one stem and a linear probe of that stem at 384 and on a centre 224 crop of the 512 "
    "input (weights ship in the package)",
)
def _mpiqa_small(backbone=None, weights=None, seed=0, **kwargs) -> IQAModel:
    from mpiqa.backbones.pretrained import get_pretrained, resolve_pretrained
    from mpiqa.models.quality_levels import (
        QualityLevelsIQA,
        load_level_heads,
        load_linear_probe,
    )

    _refuse_other_backbone("mpiqa-small", backbone, weights)
    clip = load_clip("mpiqa-small")
    # the towers of two more seeds over the same stem: their mean generalised better
    heads = (
        load_level_heads(resolve_pretrained("mpiqa-small-heads"), clip)
        if get_pretrained("mpiqa-small-heads") is not None
        else []
    )
    # and a linear probe of the stem (two views: the towers' and a finer centre crop):
    # averaged in, it ranked unseen sources better
    probe = (
        load_linear_probe(
            resolve_pretrained("mpiqa-small-probe"), clip.config.vision.token_channels
        )
        if get_pretrained("mpiqa-small-probe") is not None
        else None
    )
    return QualityLevelsIQA(clip, extra_heads=heads, probe=probe, **kwargs)


@register_model(
    "quality-levels",
    "zero-shot expected level over 'bad, poor, fair, good, perfect' (the readout mpiqa's own "
    "backbones are pre-trained with)",
)
def _quality_levels(backbone=None, weights=None, seed=0, **kwargs) -> IQAModel:
    from mpiqa.models.quality_levels import QualityLevelsIQA

    return QualityLevelsIQA(_load_backbone(backbone, weights, seed), **kwargs)


@register_model(
    "mpiqa-tiny",
    "the first offline default (224 x 224 input): multi-modal prompts on a compact CLIP "
    "pre-trained by mpiqa (weights ship in the package)",
)
def _mpiqa_tiny(backbone=None, weights=None, seed=0, **kwargs) -> IQAModel:
    _refuse_other_backbone("mpiqa-tiny", backbone, weights)
    return _packaged_model("mpiqa-tiny", **kwargs)
