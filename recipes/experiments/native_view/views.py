"""The cached stem statistics of `coverage.py` (runs/native_view/coverage.npz) and the
towers' scores of `crop_towers.py`, as the comparisons here read them."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "biq_sources"))
from shipped_parts import mos_by_name  # noqa: E402

from mpiqa.data.distortions.tasks import level_quality  # noqa: E402

d = np.load("runs/native_view/coverage.npz")
towers = np.load("runs/native_view/crop_towers.npz")
mos_of = mos_by_name()


def part(prefix: str):
    """Names, MOS (NaN: synthetic), level targets (NaN: rated), sources, clean images."""
    names = [n.split("/")[-1] for n in d[f"{prefix}_names"]]
    levels = [int(s.split("|")[2]) for s in d[f"{prefix}_items"]]
    mos = np.array([mos_of[n] for n in names] + [np.nan] * len(levels))
    target = np.array([np.nan] * len(names) + [level_quality(lv) for lv in levels])
    sources = [n[:4] for n in names] + [None] * len(levels)
    clean = np.array([s.split("|")[0] for s in d[f"{prefix}_items"]])
    return names, mos, target, sources, clean


STAGE_CHANNELS = {2: 24, 3: 40, 4: 80, 5: 112, 6: 192, 7: 320}  # the stem's taps, in order


def _stage_columns(width: int, stages: list[int], keep: bool) -> np.ndarray:
    """Columns of a stem view (each tap's means, then each tap's deviations) that belong
    to ``stages`` (``keep``) or to the other stages."""
    owner = np.concatenate([np.full(c, s) for s, c in STAGE_CHANNELS.items()] * 2)
    assert len(owner) == width, (len(owner), width)
    return np.flatnonzero(np.isin(owner, stages) == keep)


def features(views: str, prefix: str) -> torch.Tensor:
    views, _, transform = views.partition(":")
    parts = []
    for v in views.split("+"):  # VIEW^K: the view's columns K times (its penalty / K)
        v, _, k = v.partition("^")
        v, _, dropped = v.partition("~")  # VIEW~67: without stages 6 and 7's columns
        x = d[f"{prefix}_{v}"]
        if dropped:
            x = x[:, _stage_columns(x.shape[1], [int(c) for c in dropped], keep=False)]
        parts += [x] * int(k or 1)
    if transform == "log":  # the second half of each view's statistics are deviations
        parts = [
            np.concatenate([p[:, : p.shape[1] // 2], np.log(p[:, p.shape[1] // 2 :] + 1e-6)], 1)
            for p in parts
        ]
    return torch.from_numpy(np.concatenate(parts, 1))
