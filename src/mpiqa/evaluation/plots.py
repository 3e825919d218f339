"""Figures of an evaluation: predicted score against MOS with the fitted logistic, and
one metric per round of the n-round protocols. Drawn with matplotlib, an optional extra
(``pip install 'mpiqa[plot]'``); without it the numbers are still written and the
figures are left out with one log line (:func:`plot_if_available`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from mpiqa.evaluation.metrics import fit_logistic_params, logistic4
from mpiqa.runtime import MissingExtraError

logger = logging.getLogger(__name__)


def _figure(width: float, height: float):
    """A matplotlib Figure not registered with pyplot (no global state, no GUI backend)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("plots need matplotlib: pip install 'mpiqa[plot]'") from None
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def scatter_plot(
    pred: Sequence[float],
    mos: Sequence[float],
    path: str | Path,
    metrics: Mapping[str, float] | None = None,
    title: str = "",
) -> Path:
    """Predicted score (x) against MOS (y), with the increasing 4-parameter logistic that
    PLCC is computed after (see :mod:`mpiqa.evaluation.metrics`) drawn over the points.

    Args:
        pred, mos: one value per image, same length (at least 3).
        path: the PNG to write.
        metrics: SRCC, PLCC and n shown in the title, when given.

    Raises:
        MissingExtraError: matplotlib is not installed.
        ValueError: see :func:`mpiqa.evaluation.metrics.fit_logistic_params`.
    """
    pred, mos = np.asarray(pred, dtype=float), np.asarray(mos, dtype=float)
    params = fit_logistic_params(pred, mos)
    fig = _figure(5.2, 4.6)
    ax = fig.subplots()
    alpha = float(np.clip(30 / np.sqrt(len(pred)), 0.15, 0.9))  # dense clouds stay readable
    ax.scatter(pred, mos, s=10, alpha=alpha, color="#4c78a8", edgecolors="none", label="image")
    if params is not None:
        xs = np.linspace(pred.min(), pred.max(), 200)
        ax.plot(xs, logistic4(xs, *params), color="#e45756", lw=2, label="fitted logistic")
    ax.set_xlabel("predicted score")
    ax.set_ylabel("MOS (normalised to [0, 1])")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    heading = title
    if metrics:
        numbers = f"SRCC {metrics['srcc']:.3f}   PLCC {metrics['plcc']:.3f}   n = {metrics['n']}"
        heading = f"{title}\n{numbers}" if title else numbers
    ax.set_title(heading, fontsize="medium")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def rounds_plot(
    series: Mapping[str, Sequence[float]],
    path: str | Path,
    title: str = "",
    ylabel: str = "SRCC on the test part",
) -> Path:
    """One line per series over the rounds of an n-round protocol, each with its median
    as a dashed line (the figure the protocol reports), e.g. fine-tuned against
    zero-shot SRCC per round, so a round where fine-tuning lost shows as a crossing.

    Raises:
        MissingExtraError: matplotlib is not installed.
        ValueError: no series, or series of different lengths.
    """
    lengths = {len(v) for v in series.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"rounds_plot needs series of one non-zero length, got {lengths}")
    rounds = np.arange(1, lengths.pop() + 1)
    fig = _figure(5.6, 3.8)
    ax = fig.subplots()
    for i, (name, values) in enumerate(series.items()):
        colour = f"C{i}"
        median = float(np.median(values))
        ax.plot(rounds, values, "o-", color=colour, label=f"{name} (median {median:.3f})")
        ax.axhline(median, color=colour, ls="--", lw=1, alpha=0.7)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_xticks(rounds)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title, fontsize="medium")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


_warned = False


def plot_if_available(draw: Callable[..., Path], *args, **kwargs) -> Path | None:
    """``draw(*args, **kwargs)``, or ``None`` with one INFO line (once per process) when
    matplotlib is missing: a figure is a convenience, the numbers are the result."""
    global _warned
    try:
        return draw(*args, **kwargs)
    except MissingExtraError as err:
        if not _warned:
            logger.info("figures left out: %s", err)
            _warned = True
        return None
