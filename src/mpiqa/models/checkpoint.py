"""Reading checkpoints of trained prompt models (``NAME.safetensors`` holds the prompt
tensors and the backbone's tensors that trained, ``NAME.json`` what rebuilds the model
around them). Below the training layer, so that models, scoring and evaluation load
checkpoints without importing training; writing stays in :mod:`mpiqa.training.checkpoint`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from mpiqa.backbones.factory import build_random_clip, load_clip
from mpiqa.backbones.pretrained import verify_sha256
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA

logger = logging.getLogger(__name__)

#: /2 holds every prompt tensor; /1 (mpiqa until 2026-12-07) held only those that trained,
#: so its frozen prompts are taken from elsewhere where that is known (see load_checkpoint)
CHECKPOINT_FORMAT = "mpiqa-checkpoint/2"
_FORMAT_1 = "mpiqa-checkpoint/1"


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


def read_checkpoint_meta(path: str | Path) -> dict:
    """The ``.json`` beside a checkpoint, checked to be an mpiqa checkpoint's.

    Raises:
        FileNotFoundError: either file is missing; ValueError: unreadable or foreign JSON.
    """
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: its configuration {meta_path.name} is missing beside it")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{meta_path}: not a readable JSON file ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") not in (CHECKPOINT_FORMAT, _FORMAT_1):
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{meta_path}: not an mpiqa checkpoint (format {found!r})")
    for key, kind in (("backbone", dict), ("mmp", dict)):
        if not isinstance(meta.get(key), kind):
            raise ValueError(f"{meta_path}: its {key!r} entry is missing or not a mapping")
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
    if not isinstance(spec.get("arch"), str):
        raise ValueError(f"{path}: its backbone record names no architecture")
    try:
        mmp = MMPConfig.from_dict(meta["mmp"])  # checked before anything is built
    except (TypeError, ValueError) as err:
        raise ValueError(f"{Path(path).with_suffix('.json')}: {err}") from None
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
    model = MultiModalPromptIQA(backbone, mmp, **model_kwargs)
    try:
        tensors = load_file(str(path))
    except Exception as err:  # SafetensorError and friends: a malformed file
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    expected = set(model.checkpoint_state_dict())
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    trained = {name for name, _ in model.trainable_parameters()}
    if unexpected or (missing and meta["format"] != _FORMAT_1) or missing & trained:
        raise ValueError(
            f"{path}: tensors do not match the model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    if missing:  # prompts that stayed frozen, which format /1 did not save
        tensors = {**_frozen_prompts_of_start(path, meta, sorted(missing), device), **tensors}
    assign_tensors(model, tensors, path)
    model.preprocess_options = _preprocess_options(meta.get("preprocess") or {}, path)
    model.labelled_families = _labelled_families(meta, path)
    return model.to(device).eval()


def _labelled_families(meta: dict, path: str | Path) -> tuple[str, ...] | None:
    """The families (distortion, scene) a checkpoint's model learned to tell apart from
    labels of their own, whose classes are worth printing: as recorded (a fine-tuning
    keeps its starting model's: it trains on quality labels alone), else from its
    training loss's weights; None (all) where neither is known."""
    recorded = meta.get("labelled_families")
    if isinstance(recorded, list):
        return tuple(f for f in ("distortion", "scene") if f in recorded)
    config = meta.get("config")
    loss = config.get("loss") if isinstance(config, dict) else None
    if isinstance(loss, dict):
        return tuple(f for f in ("distortion", "scene") if float(loss.get(f, 0) or 0) > 0)
    if isinstance(meta.get("finetune"), dict):  # a fine-tuning that recorded none (format /1)
        start = _finetune_start(meta, path)
        return _labelled_families(read_checkpoint_meta(start), start) if start else ()
    return None


def _recorded_start(meta: dict, path: str | Path) -> str | None:
    """The checkpoint a fine-tuning started from: as its JSON records it, or, for a round
    of ``finetune --rounds`` (``RUN/round_K/``), as the run's ``summary.json`` does."""
    finetune = meta.get("finetune")
    data = finetune.get("data") if isinstance(finetune, dict) else None
    start = data.get("start") if isinstance(data, dict) else None
    summary = Path(path).parent.parent / "summary.json"
    if start is None and Path(path).parent.name.startswith("round_") and summary.is_file():
        try:
            data = json.loads(summary.read_text(encoding="utf-8")).get("data")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            data = None
        start = data.get("start") if isinstance(data, dict) else None
    return start if isinstance(start, str) else None


def _finetune_start(meta: dict, path: str | Path) -> str | None:
    """:func:`_recorded_start`, if that file is there."""
    start = _recorded_start(meta, path)
    return start if start and Path(start).is_file() else None


def _frozen_prompts_of_start(
    path: str | Path, meta: dict, names: list[str], device: str | torch.device
) -> dict[str, torch.Tensor]:
    """The prompt tensors ``names`` that a checkpoint of format /1 left out because they
    did not train, taken from the model its fine-tuning started from (recorded in its
    JSON): a fine-tuning freezes the text context of its starting model by default.

    Raises:
        ValueError: no recorded starting model to take them from (a model rebuilt without
            them would hold fresh random values there, different at every load).
    """
    start = _finetune_start(meta, path)
    if start is None:
        recorded = _recorded_start(meta, path)
        raise ValueError(
            f"{path}: holds no {', '.join(names)}: prompts that stayed frozen while it trained, "
            f"which checkpoints of format {_FORMAT_1} (mpiqa until 2026-12-07) did not save"
            + (f", and its starting model {recorded} is not there" if recorded else "")
            + "; without them its scores would change from load to load: train it again"
        )
    source = load_checkpoint(start, device=device).checkpoint_state_dict()
    if set(names) - set(source):
        raise ValueError(
            f"{path}: its starting model {start} has no {sorted(set(names) - set(source))}"
        )
    logger.warning(
        "%s: its frozen prompts (%s) were not saved (format %s); taken from the model its "
        "fine-tuning started from, %s",
        path,
        ", ".join(names),
        _FORMAT_1,
        start,
    )
    return {name: source[name] for name in names}


def _preprocess_options(options: dict, path) -> dict:
    known = {"resize": int, "squash": bool, "stats": str}
    if not isinstance(options, dict) or set(options) - set(known):
        raise ValueError(f"{path}: unknown preprocessing {options!r}")
    if options.get("stats", "clip") not in ("clip", "imagenet"):
        raise ValueError(f"{path}: unknown normalisation {options['stats']!r}")
    return {k: known[k](v) for k, v in options.items()}
