"""Paired bootstrap (1,000 resamples) of `twins.py` runs against the recipe's towers:
validation part (all, within each source), held-apart distortions (resampling clean
images with their versions), the left-out source, and how often a validation photo's
distorted twin scores below it.

    python recipes/experiments/real_distortions/compare.py [NEW OLD] [SEED ...]

NEW and OLD are run tags without the held source and seed (default ``twins base``;
e.g. ``twins-l12w0.25``, ``base-distortion_weight0``); each seed's runs are compared, then
the mean of the seeds' towers when several are given."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "biq_sources"))
from bootstrap import paired_difference, srcc  # noqa: E402

RUNS = Path("runs/real_distortions")
args = sys.argv[1:]
new, old = (args[0], args[1]) if len(args) >= 2 and not args[0].isdigit() else ("twins", "base")
seeds = [int(a) for a in args if a.isdigit()] or [0]


def load(mode: str, held: str) -> list[dict] | None:
    paths = [RUNS / f"{mode}_{held}_s{s}.pt" for s in seeds]
    if not all(p.is_file() for p in paths):
        return None
    return [torch.load(p, weights_only=True) for p in paths]  # tensors and lists of names


def mean(runs: list[dict], key: str) -> np.ndarray:
    return np.mean([r[key].numpy() for r in runs], 0)


for held in ("none", "ss01", "ss02", "ss03"):
    a, b = load(new, held), load(old, held)
    if a is None or b is None:
        continue
    rng = np.random.default_rng(0)
    print(f"== {new} - {old}, {held} left out, seeds {seeds} (mean of the towers)")
    y, src = a[0]["val_mos"].numpy(), np.array(a[0]["val_source"])
    sa, sb = mean(a, "val"), mean(b, "val")
    print(f"val all: {srcc(sa, y):.4f} vs {srcc(sb, y):.4f}: {paired_difference(sa, sb, y, rng)}")
    for s in ("ss01", "ss02", "ss03"):
        m = src == s
        print(f"  within {s}: {paired_difference(sa[m], sb[m], y[m], rng)}")
    t = a[0]["synthetic_target"].numpy()
    ta, tb = mean(a, "synthetic"), mean(b, "synthetic")
    diff = paired_difference(ta, tb, t, rng, groups=a[0]["synthetic_clean"])
    print(f"held-apart synthetic: {srcc(ta, t):.4f} vs {srcc(tb, t):.4f}: {diff}")
    if held != "none":
        y = a[0]["held_mos"].numpy()
        ha, hb = mean(a, "held"), mean(b, "held")
        diff = paired_difference(ha, hb, y, rng)
        print(f"{held} left out: {srcc(ha, y):.4f} vs {srcc(hb, y):.4f}: {diff}")
    below = [float((mean(r, "val_twins") < mean(r, "val")).mean()) for r in (a, b)]
    print(f"val twins scored below their photo: {below[0]:.3f} vs {below[1]:.3f}")
