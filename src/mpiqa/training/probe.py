"""The linear probe that ``mpiqa-small`` averages with its towers: a ridge regression on the
stem's global per-channel statistics (what the towers' global token reads), fitted on the
same cached training features as the towers.

Rated images regress onto their MOS, synthetic ones onto their level's quality target
with a row weight (the towers' ``synthetic_weight``, 0.5); the penalty is chosen by
k-fold cross-validation over the rated rows (SRCC against the MOS), the synthetic rows
training in every fold.
Across BIQ2021's three sources (leave one source out), averaging such a probe with the
towers ranked the unseen source better than the towers alone (model card).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from mpiqa.backbones.vision import VisionTransformer
from mpiqa.evaluation.metrics import srcc
from mpiqa.models.quality_levels import PROBE_FORMAT, LinearProbe

logger = logging.getLogger(__name__)

ALPHAS = (1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)


def _ridge(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float) -> LinearProbe:
    """Weighted ridge on standardised features, the intercept unpenalised (float64)."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    z = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    penalty = alpha * torch.eye(z.shape[1], dtype=x.dtype)
    penalty[-1, -1] = 0
    coef = torch.linalg.solve(z.T @ (w[:, None] * z) + penalty, z.T @ (w * y))
    return LinearProbe(mean.float(), std.float(), coef[:-1].float(), coef[-1:].float())


@torch.no_grad()
def global_statistics(visual: VisionTransformer, features: torch.Tensor, chunk: int = 512):
    """(N, C) float64 statistics of cached stem features, as the model computes them."""
    return torch.cat(
        [visual.global_statistics(part.float()).double() for part in features.split(chunk)]
    )


def fit_probe(
    stats: torch.Tensor,
    mos: torch.Tensor,
    synthetic_target: torch.Tensor,
    synthetic_weight: float = 0.5,
    alphas: Sequence[float] = ALPHAS,
    folds: int = 5,
    seed: int = 0,
) -> tuple[LinearProbe, dict]:
    """Fit the probe; returns it and a summary (penalty, cross-validated SRCCs).

    Args:
        stats: (N, C) global statistics (:func:`global_statistics`).
        mos: (N,) MOS in [0, 1], NaN for synthetic rows.
        synthetic_target: (N,) level targets, NaN for rated rows.
        synthetic_weight: row weight of synthetic rows (0 leaves them out).

    Raises:
        ValueError: shapes that differ, fewer rated rows than folds, or rows with neither
            target.
    """
    n = stats.shape[0]
    if not (mos.shape == synthetic_target.shape == (n,)):
        raise ValueError("stats, mos and synthetic_target must have the same number of rows")
    rated = ~torch.isnan(mos)
    synthetic = ~torch.isnan(synthetic_target) & ~rated
    if not bool((rated | synthetic).all()):
        raise ValueError("every row needs a MOS or a synthetic target")
    use = rated | (synthetic if synthetic_weight > 0 else torch.zeros_like(synthetic))
    x, r, s = stats[use].double(), rated[use], synthetic[use]
    y = torch.where(r, mos[use], synthetic_target[use]).double()
    w = torch.where(r, 1.0, float(synthetic_weight)).double()
    # Folds over the rated rows only, the synthetic rows training in every fold: the
    # synthetic rows of one clean image are near copies of each other, so folds over
    # them would leak and favour small penalties (it picked 100 where the held-apart
    # distortions and BIQ2021's unseen sources both preferred more).
    rated_rows = torch.nonzero(r).flatten()
    if len(rated_rows) < folds:
        raise ValueError(f"need at least {folds} rated rows to choose the penalty")
    order = rated_rows[
        torch.randperm(len(rated_rows), generator=torch.Generator().manual_seed(seed))
    ]
    best: tuple[float, float] | None = None
    for alpha in alphas:
        pred = torch.empty(len(y), dtype=torch.float64)
        for held in order.chunk(folds):
            train = torch.ones(len(y), dtype=torch.bool)
            train[held] = False
            pred[held] = _ridge(x[train], y[train], w[train], alpha)(x[held].float()).double()
        score = srcc(pred[order].numpy(), y[order].numpy())
        logger.info("probe: alpha %g  cross-validated SRCC on the rated rows %.4f", alpha, score)
        if best is None or score > best[0]:
            best = (score, alpha)
    assert best is not None
    cv, alpha = best
    summary = {
        "alpha": alpha,
        "cv_srcc_rated": round(cv, 4),
        "rows": {"rated": int(r.sum()), "synthetic": int(s.sum())},
        "synthetic_weight": synthetic_weight,
    }
    return _ridge(x, y, w, alpha), summary


def save_probe(path: str | Path, probe: LinearProbe, metadata: dict | None = None) -> Path:
    """Write ``probe`` as safetensors (float32) with its format tag."""
    from safetensors.torch import save_file

    from mpiqa.atomic import atomic_write

    meta = {"format": PROBE_FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}}
    if probe.detail is not None:  # the views it reads: load_linear_probe builds them back
        meta.update(detail=str(probe.detail), input_size=str(probe.input_size))
    tensors = {k: v.float().contiguous() for k, v in probe.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
