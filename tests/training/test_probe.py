"""The linear probe: weighted ridge, penalty by cross-validation over the rated rows, and
its file format."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mpiqa.backbones.convert import CheckpointError
from mpiqa.models.quality_levels import LinearProbe, load_linear_probe
from mpiqa.training.probe import ALPHAS, fit_probe, save_probe


def _rows(n_rated: int = 120, n_synthetic: int = 60, channels: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    stats = torch.randn(n_rated + n_synthetic, channels, generator=g, dtype=torch.float64) * 3 + 1
    true = torch.tensor([0.05, -0.03, 0.0, 0.02, 0.0, 0.01], dtype=torch.float64)[:channels]
    y = 0.5 + stats @ true + 0.01 * torch.randn(len(stats), generator=g, dtype=torch.float64)
    nan = torch.full((len(stats),), math.nan, dtype=torch.float64)
    mos = torch.where(torch.arange(len(stats)) < n_rated, y, nan)
    target = torch.where(torch.arange(len(stats)) >= n_rated, y, nan)
    return stats, mos, target, y


def test_the_probe_recovers_a_linear_quality_and_reports_its_choice():
    stats, mos, target, y = _rows()
    probe, summary = fit_probe(stats, mos, target)
    assert summary["alpha"] in ALPHAS and summary["rows"] == {"rated": 120, "synthetic": 60}
    assert summary["cv_srcc_rated"] > 0.95
    fresh, _, _, y_fresh = _rows(seed=1)
    pred = probe(fresh.float()).double()
    assert float(np.corrcoef(pred.numpy(), y_fresh.numpy())[0, 1]) > 0.98
    # by hand: standardised features, the fitted line
    z = (fresh.float() - probe.mean) / probe.std
    assert torch.allclose(pred.float(), (z @ probe.weight + probe.bias).clamp(0, 1), atol=1e-6)


def test_synthetic_rows_weigh_in_and_can_be_left_out():
    stats, mos, target, _ = _rows()
    target[120:] = 1 - target[120:]  # synthetic targets that disagree with the MOS
    with_them, _ = fit_probe(stats, mos, target, synthetic_weight=1.0)
    without, summary = fit_probe(stats, mos, target, synthetic_weight=0.0)
    assert summary["rows"]["synthetic"] == 0
    assert not torch.allclose(with_them.weight, without.weight)
    # rated rows alone fit the MOS better than rated + contradicting synthetic rows
    assert summary["cv_srcc_rated"] > fit_probe(stats, mos, target, 1.0)[1]["cv_srcc_rated"]


def test_fit_refuses_what_it_cannot_use():
    stats, mos, target, _ = _rows()
    with pytest.raises(ValueError, match="same number of rows"):
        fit_probe(stats, mos[:-1], target)
    both_missing = target.clone()
    both_missing[150] = math.nan
    with pytest.raises(ValueError, match="needs a MOS or a synthetic target"):
        fit_probe(stats, mos, both_missing)
    with pytest.raises(ValueError, match="rated rows"):
        fit_probe(stats[117:], mos[117:], target[117:])


def test_probe_files_round_trip_and_foreign_ones_are_refused(tmp_path):
    stats, mos, target, _ = _rows()
    probe, _ = fit_probe(stats, mos, target)
    path = save_probe(tmp_path / "probe.safetensors", probe, {"alpha": 10})
    loaded = load_linear_probe(path, 6)
    for name, tensor in probe.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with pytest.raises(CheckpointError, match="probe of 7 channels"):
        load_linear_probe(path, 7)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not an mpiqa probe file"):
        load_linear_probe(tmp_path / "other.safetensors", 6)
    bad = LinearProbe(probe.mean, -probe.std, probe.weight, probe.bias)
    with pytest.raises(CheckpointError, match="std must be positive"):
        load_linear_probe(save_probe(tmp_path / "bad.safetensors", bad), 6)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_linear_probe(tmp_path / "junk.safetensors", 6)


def test_a_detail_probe_keeps_its_views_in_the_file(tmp_path):
    stats, mos, target, _ = _rows()
    probe, _ = fit_probe(stats, mos, target)
    two = LinearProbe(probe.mean, probe.std, probe.weight, probe.bias, detail=2, input_size=8)
    loaded = load_linear_probe(save_probe(tmp_path / "two.safetensors", two), 3)
    assert (loaded.detail, loaded.input_size, loaded.views) == (2, 8, 2)
    with pytest.raises(CheckpointError, match="probe of 12 channels"):
        load_linear_probe(tmp_path / "two.safetensors", 6)  # 6 per view: 12 in all
    with pytest.raises(ValueError, match="needs an input_size"):
        LinearProbe(probe.mean, probe.std, probe.weight, probe.bias, detail=9, input_size=8)
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in probe.state_dict().items()}
    meta = {"format": "mpiqa-level-probe/1", "detail": "9", "input_size": "8"}
    save_file(tensors, str(tmp_path / "wrong.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="wrong.safetensors: a probe's detail crop"):
        load_linear_probe(tmp_path / "wrong.safetensors", 3)
    save_file(tensors, str(tmp_path / "text.safetensors"), metadata={**meta, "detail": "x"})
    with pytest.raises(CheckpointError, match="must be integers"):
        load_linear_probe(tmp_path / "text.safetensors", 3)


def _two_sources(n: int = 200, seed: int = 0):
    """Two sources whose MOS levels differ by 0.3; feature 0 carries quality within a
    source, feature 1 only tells the sources apart."""
    g = torch.Generator().manual_seed(seed)
    source = torch.arange(n) % 2
    stats = torch.randn(n, 3, generator=g, dtype=torch.float64)
    stats[:, 1] += 3.0 * source
    mos = 0.35 + 0.05 * stats[:, 0] + 0.3 * source + 0.01 * torch.randn(n, generator=g)
    names = ["ss01" if s == 0 else "ss02" for s in source.tolist()]
    return stats, mos.double(), torch.full((n,), math.nan, dtype=torch.float64), names


def test_a_within_source_probe_ignores_what_tells_sources_apart():
    stats, mos, target, names = _two_sources()
    pooled, _ = fit_probe(stats, mos, target)
    inner, summary = fit_probe(stats, mos, target, sources=names, within=1.0)
    assert summary["sources"] == {"ss01": 100, "ss02": 100}
    assert summary["alpha"] == summary["alpha_within"] in ALPHAS
    # the pooled ridge leans on the source feature, the within-source one does not
    assert abs(float(pooled.weight[1])) > 0.05
    assert abs(float(inner.weight[1])) < 0.01 < float(inner.weight[0])
    # its bias is the sources' mean intercept: scores sit between the two MOS levels
    assert 0.4 < float(inner.bias) < 0.6
    half, summary = fit_probe(stats, mos, target, sources=names, within=0.5)
    assert summary["within"] == 0.5 and "cv_srcc_rated" in summary
    assert torch.allclose(half.weight, 0.5 * (pooled.weight + inner.weight), atol=1e-6)
    assert torch.allclose(half.bias, 0.5 * (pooled.bias + inner.bias), atol=1e-6)


def test_synthetic_rows_are_a_source_of_their_own_and_unnamed_rows_share_one():
    stats, mos, target, names = _two_sources()
    # half the rows become synthetic whose targets sit 0.5 lower: their own intercept
    # absorbs the offset, so it moves neither the coefficients nor the bias much
    synthetic = torch.arange(len(mos)) >= 100
    target = torch.where(synthetic, mos - 0.5, target)
    mos = torch.where(synthetic, math.nan, mos)
    inner, summary = fit_probe(stats, mos, target, sources=names, within=1.0)
    assert summary["rows"] == {"rated": 100, "synthetic": 100}
    assert summary["sources"] == {"ss01": 50, "ss02": 50}
    assert 0.4 < float(inner.bias) < 0.6 and float(inner.weight[0]) > 0.03
    _, summary = fit_probe(stats, mos, target, sources=[None] * len(mos), within=1.0)
    assert summary["sources"] == {"(none)": 100}


def test_within_source_arguments_are_checked():
    stats, mos, target, names = _two_sources()
    with pytest.raises(ValueError, match=r"within must be in \[0, 1\]"):
        fit_probe(stats, mos, target, sources=names, within=1.5)
    with pytest.raises(ValueError, match="sources has 199 entries for 200 rows"):
        fit_probe(stats, mos, target, sources=names[:-1], within=0.5)
