"""The evaluation figures: a scatter with the fitted logistic, a per-round plot, and a
clean skip (numbers still written) without matplotlib."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from mpiqa.evaluation import plots
from mpiqa.evaluation.metrics import all_metrics
from mpiqa.evaluation.report import write_report
from mpiqa.runtime import MissingExtraError

pytest.importorskip("matplotlib")


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0, 1, n)
    mos = 1 / (1 + np.exp(-(pred - 0.5) * 8)) + rng.normal(0, 0.05, n)
    return pred, mos


def _red_pixels(path):
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((pixels[..., 0] > 200) & (pixels[..., 1] < 120) & (pixels[..., 2] < 120)).sum())


def test_scatter_draws_the_fitted_logistic(tmp_path):
    pred, mos = _data()
    with_curve = plots.scatter_plot(pred, mos, tmp_path / "a.png", all_metrics(pred, mos), "m")
    assert Image.open(with_curve).size == (520, 460)
    assert _red_pixels(with_curve) > 300  # the curve (and its legend entry) is drawn

    constant = np.full_like(pred, 0.5)  # no logistic can be fitted to a constant score
    without = plots.scatter_plot(constant, mos, tmp_path / "b.png")
    assert _red_pixels(without) < 50


def test_rounds_plot_checks_its_series(tmp_path):
    path = plots.rounds_plot({"fine-tuned": [0.7, 0.8, 0.75], "zero-shot": [0.6, 0.65, 0.7]},
                             tmp_path / "r.png", "t")  # fmt: skip
    assert Image.open(path).size == (560, 380)
    with pytest.raises(ValueError, match="one non-zero length"):
        plots.rounds_plot({"a": [0.1, 0.2], "b": [0.3]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="one non-zero length"):
        plots.rounds_plot({}, tmp_path / "x.png")


def test_without_matplotlib_the_report_keeps_its_numbers(tmp_path, monkeypatch, caplog):
    def missing(*args, **kwargs):
        raise MissingExtraError("plots need matplotlib: pip install 'mpiqa[plot]'")

    monkeypatch.setattr(plots, "_figure", missing)
    monkeypatch.setattr(plots, "_warned", False)
    pred, mos = _data(20)
    with caplog.at_level(logging.INFO, logger="mpiqa"):
        write_report(tmp_path, "m", all_metrics(pred, mos), pred, mos, [str(i) for i in range(20)])
    assert not (tmp_path / "scatter.png").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["n"] == 20
    assert "pip install 'mpiqa[plot]'" in caplog.text
