"""Losses of quality training.

- quality: BCE, fidelity or MSE between the predicted score and the normalised MOS;
- rank: pairwise fidelity loss (Thurstone model, as in LIQE / UNIQUE) over a batch;
- scene / distortion: cross-entropy on the class marginals where labels exist (-1 = none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

QualityLoss = Literal["bce", "fidelity", "mse"]
_EPS = 1e-8


def quality_loss(
    score: torch.Tensor, target: torch.Tensor, kind: QualityLoss = "fidelity"
) -> torch.Tensor:
    """score, target: (N,) in [0, 1]."""
    score = score.clamp(_EPS, 1 - _EPS)
    if kind == "bce":
        return F.binary_cross_entropy(score, target)
    if kind == "fidelity":
        return (
            1 - torch.sqrt(score * target + _EPS) - torch.sqrt((1 - score) * (1 - target) + _EPS)
        ).mean()
    if kind == "mse":
        return F.mse_loss(score, target)
    raise ValueError(f"quality loss must be bce, fidelity or mse, got {kind!r}")


def rank_fidelity_loss(score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over ordered pairs i != j of 1 - sqrt(p g) - sqrt((1 - p)(1 - g)), where
    p = Phi((s_i - s_j) / sqrt(2)) and g = 1, 0.5 or 0 as target_i >, = or < target_j."""
    if score.numel() < 2:
        return score.sum() * 0
    diff = score[:, None] - score[None, :]
    p = 0.5 * (1 + torch.erf(diff / 2))  # Phi(d / sqrt 2) = (1 + erf(d / 2)) / 2
    g = (torch.sign(target[:, None] - target[None, :]) + 1) / 2
    loss = 1 - torch.sqrt(p * g + _EPS) - torch.sqrt((1 - p) * (1 - g) + _EPS)
    off_diagonal = ~torch.eye(len(score), dtype=torch.bool, device=score.device)
    return loss[off_diagonal].mean()


def class_loss(probs: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor | None:
    """Cross-entropy of class marginals (N, C) against labels (N,), -1 ignored; None when
    there is nothing to learn from."""
    if probs is None or labels is None:
        return None
    known = labels >= 0
    if not known.any():
        return None
    return F.nll_loss(torch.log(probs[known] + _EPS), labels[known])


@dataclass
class LossWeights:
    quality: float = 1.0
    rank: float = 0.0
    scene: float = 0.1
    distortion: float = 0.1
    quality_kind: QualityLoss = "fidelity"


def total_loss(
    prediction, batch: dict, weights: LossWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the losses that apply to this batch, and each term's value."""
    target = batch["score"].to(prediction.score.device, torch.float32)
    terms = {"quality": quality_loss(prediction.score, target, weights.quality_kind)}
    if weights.rank:
        terms["rank"] = rank_fidelity_loss(prediction.score, target)
    for name in ("scene", "distortion"):
        if getattr(weights, name) and name in batch:
            value = class_loss(getattr(prediction, name), batch[name].to(target.device))
            if value is not None:
                terms[name] = value
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}
