"""The linear probe that ``mpiqa-small`` averages with its towers: a ridge regression on the
stem's global per-channel statistics (what the towers' global token reads), fitted on the
same cached training features as the towers.

Rated images regress onto their MOS, synthetic ones onto their level's quality target
with a row weight (the towers' ``synthetic_weight``, 0.5); the penalty is chosen by
k-fold cross-validation over the rated rows (SRCC against the MOS), the synthetic rows
training in every fold.
Across BIQ2021's three sources (leave one source out), averaging such a probe with the
towers ranked the unseen source better than the towers alone (model card). Optionally a
share of it is fitted within each source (one intercept per source), so that it learns
quality within a collection of photos rather than what tells the collections apart.
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


def _ridge(
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    alpha: float,
    groups: torch.Tensor | None = None,
    rated: torch.Tensor | None = None,
) -> LinearProbe:
    """Weighted ridge on standardised features, the intercepts unpenalised (float64).

    With ``groups`` ((N,) integer ids), one intercept per group: the coefficients then fit
    the variation within the groups only, and the probe's bias is the mean of the
    intercepts of the groups of ``rated`` rows, weighted by those rows (a constant: it
    moves no ranking, only where scores sit in [0, 1])."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    ids = (
        torch.zeros(len(x), dtype=torch.long)
        if groups is None
        else groups.unique(return_inverse=True)[1]
    )
    onehot = torch.nn.functional.one_hot(ids).to(x.dtype)
    k = onehot.shape[1]
    z = torch.cat([(x - mean) / std, onehot], 1)
    penalty = alpha * torch.eye(z.shape[1], dtype=x.dtype)
    penalty[-k:, -k:] = 0
    coef = torch.linalg.solve(z.T @ (w[:, None] * z) + penalty, z.T @ (w * y))
    intercepts = coef[-k:]
    if k > 1:
        counts = onehot[rated if rated is not None else slice(None)].sum(0)
        intercepts = (counts @ intercepts / counts.sum()).reshape(1)
    return LinearProbe(mean.float(), std.float(), coef[:-k].float(), intercepts.float())


@torch.no_grad()
def global_statistics(visual: VisionTransformer, features: torch.Tensor, chunk: int = 512):
    """(N, C) float64 statistics of cached stem features, as the model computes them."""
    return torch.cat(
        [visual.global_statistics(part.float()).double() for part in features.split(chunk)]
    )


def _choose_alpha(
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    order: torch.Tensor,
    alphas: Sequence[float],
    folds: int,
    groups: torch.Tensor | None,
    rated: torch.Tensor,
) -> tuple[float, float]:
    """The penalty whose k-fold predictions of the rated rows (``order``, in ``folds``
    chunks; every other row trains in every fold) rank best against ``y``: (alpha, SRCC)."""
    best: tuple[float, float] | None = None
    for alpha in alphas:
        pred = torch.empty(len(y), dtype=torch.float64)
        for held in order.chunk(folds):
            t = torch.ones(len(y), dtype=torch.bool)
            t[held] = False
            g = None if groups is None else groups[t]
            probe = _ridge(x[t], y[t], w[t], alpha, g, rated[t])
            pred[held] = probe(x[held].float()).double()
        score = srcc(pred[order].numpy(), y[order].numpy())
        what = "" if groups is None else " (within sources)"
        logger.info(
            "probe%s: alpha %g  cross-validated SRCC on the rated rows %.4f", what, alpha, score
        )
        if best is None or score > best[0]:
            best = (score, alpha)
    assert best is not None
    return best[1], best[0]


def fit_probe(
    stats: torch.Tensor,
    mos: torch.Tensor,
    synthetic_target: torch.Tensor,
    synthetic_weight: float = 0.5,
    alphas: Sequence[float] = ALPHAS,
    folds: int = 5,
    seed: int = 0,
    sources: Sequence[str | None] | None = None,
    within: float = 0.0,
) -> tuple[LinearProbe, dict]:
    """Fit the probe; returns it and a summary (penalties, cross-validated SRCCs).

    With ``within`` > 0 the probe is the blend ``(1 - within) * pooled + within *
    within-source`` of two ridges on the same rows: the pooled one (every row onto its
    target, one intercept) and one with an intercept per source (the synthetic rows one
    source of their own), whose coefficients learn quality within a source rather than
    what tells the sources apart. A blend of two linear probes on the same standardised
    features is one linear probe: the file and the model do not change. Each ridge takes
    its own penalty by the same cross-validation.

    Args:
        stats: (N, C) global statistics (:func:`global_statistics`).
        mos: (N,) MOS in [0, 1], NaN for synthetic rows.
        synthetic_target: (N,) level targets, NaN for rated rows.
        synthetic_weight: row weight of synthetic rows (0 leaves them out).
        sources: (N,) the collection each row comes from (e.g. BIQ2021's file-name prefix
            ``ss01``), read for rated rows only; ``None`` entries form one source, as do
            all rated rows when ``sources`` is None.
        within: share of the within-source ridge, in [0, 1].

    Raises:
        ValueError: shapes that differ, fewer rated rows than folds, rows with neither
            target, ``within`` outside [0, 1], or ``sources`` of another length.
    """
    n = stats.shape[0]
    if not (mos.shape == synthetic_target.shape == (n,)):
        raise ValueError("stats, mos and synthetic_target must have the same number of rows")
    if not 0.0 <= within <= 1.0:
        raise ValueError(f"within must be in [0, 1], got {within}")
    if sources is not None and len(sources) != n:
        raise ValueError(f"sources has {len(sources)} entries for {n} rows")
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
    summary: dict = {
        "rows": {"rated": int(r.sum()), "synthetic": int(s.sum())},
        "synthetic_weight": synthetic_weight,
    }
    probe = None
    if within < 1.0:
        alpha, cv = _choose_alpha(x, y, w, order, alphas, folds, None, r)
        probe = _ridge(x, y, w, alpha)
        summary.update(alpha=alpha, cv_srcc_rated=round(cv, 4))
    if within > 0.0:
        names = ["" if v is None else str(v) for v in (sources or [None] * n)]
        labels = [names[i] if bool(rated[i]) else "\0synthetic" for i in range(n)]
        kinds = sorted(set(labels))
        groups = torch.tensor([kinds.index(v) for v in labels])[use]
        a_in, cv_in = _choose_alpha(x, y, w, order, alphas, folds, groups, r)
        inner = _ridge(x, y, w, a_in, groups, r)
        summary.update(
            within=within,
            alpha_within=a_in,
            cv_srcc_rated_within=round(cv_in, 4),
            sources={k or "(none)": labels.count(k) for k in kinds if k != "\0synthetic"},
        )
        if probe is None:
            probe = inner
            summary["alpha"] = a_in
        else:
            probe = LinearProbe(
                probe.mean,
                probe.std,
                (1 - within) * probe.weight + within * inner.weight,
                (1 - within) * probe.bias + within * inner.bias,
            )
    assert probe is not None
    return probe, summary


def save_probe(path: str | Path, probe: LinearProbe, metadata: dict | None = None) -> Path:
    """Write ``probe`` as safetensors (float32) with its format tag."""
    from safetensors.torch import save_file

    from mpiqa.atomic import atomic_write

    meta = {"format": PROBE_FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}}
    if probe.detail is not None:  # the views it reads: load_linear_probe builds them back
        meta.update(detail=str(probe.detail), input_size=str(probe.input_size))
    tensors = {k: v.float().contiguous() for k, v in probe.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
