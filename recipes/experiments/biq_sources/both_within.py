"""The towers' within-source rank loss (loso.py none both / ss03 both, seed 0) against the
recipe's seed-0 tower, each mixed 1/2 : 1/2 with a probe: the pooled one, the within-source
one, or their half (the sixth version's), from runs/within_probe_parts.pt; validation part
(all and per source) and ss03 left out; paired bootstrap (1,000)."""

import numpy as np
import torch
from scipy.stats import spearmanr
from seed0_tower import seed0_val_scores
from within_parts import load_parts


def r(a, b):
    return spearmanr(a, b)[0]


base, src = seed0_val_scores()
both = torch.load("runs/loso/none_both_pred.pt", weights_only=True)
parts = load_parts()
_, pv, y = parts["val"]
assert np.allclose(both["mos"].numpy(), y, atol=1e-6)
rng = np.random.default_rng(0)


def boot(a, b, y, n=1000):
    d = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        d.append(r(a[i], y[i]) - r(b[i], y[i]))
    return np.percentile(d, [2.5, 97.5])


for pname in ("shipped", "within", "half"):
    p = (
        pv["shipped"]
        if pname == "shipped"
        else pv["within"]
        if pname == "within"
        else 0.5 * (pv["shipped"] + pv["within"])
    )
    a, b = 0.5 * both["towers"].numpy() + 0.5 * p, 0.5 * base + 0.5 * p
    line = f"val, probe {pname}: all {r(b, y):.4f} -> {r(a, y):.4f} {boot(a, b, y)}"
    for s in ("ss01", "ss02", "ss03"):
        k = src == s
        line += f" | {s} {r(b[k], y[k]):.4f} -> {r(a[k], y[k]):.4f} {boot(a[k], b[k], y[k])}"
    print(line, flush=True)
lo_both = torch.load("runs/loso/ss03_both_pred.pt", weights_only=True)
lo = torch.load("runs/loso/ss03_pred.pt", weights_only=True)
_, pl, yl = parts["ss03 left out"]
assert np.allclose(lo["mos"].numpy(), yl) and np.allclose(lo_both["mos"].numpy(), yl)
for pname in ("shipped", "half"):
    p = pl["shipped"] if pname == "shipped" else 0.5 * (pl["shipped"] + pl["within"])
    a, b = 0.5 * lo_both["towers"].numpy() + 0.5 * p, 0.5 * lo["towers"].numpy() + 0.5 * p
    print(
        f"ss03 left out, probe {pname}: {r(b, yl):.4f} -> {r(a, yl):.4f} {boot(a, b, yl)}",
        flush=True,
    )
