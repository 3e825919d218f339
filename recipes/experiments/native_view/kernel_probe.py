"""A non-linear probe: kernel ridge regression (RBF kernel) on the shipped probe's
features (the stem's global statistics of the 384 view and the centre 224 crop,
standardised), against the linear ridge on the same rows.

Classic blind IQA regresses hand-made features onto MOS with an RBF support vector
regression (BRISQUE); the shipped probe is linear. Rows, weights and selection as the
shipped rule (`fit_probe`): rated rows onto their MOS, synthetic rows onto their level
target at weight 0.5, the kernel's width (a multiple of the median squared distance) and
penalty chosen by 5-fold cross-validation over the rated rows, the synthetic rows
training in every fold. The linear probes compared: the same rule with one intercept
(across sources, as the kernel probe) and the shipped rule (half within sources).

Reported as `coverage_compare.py` reports: ½ the shipped towers + ½ the probe on
BIQ2021's validation part and the held-apart distortions, and the probe alone on each
BIQ2021 source left out of its fit (selection redone without it); paired bootstrap.

    python recipes/experiments/native_view/kernel_probe.py      # about 20 min on 2 cores
"""

import logging
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "biq_sources"))
from bootstrap import paired_difference, srcc  # noqa: E402
from views import features, part, towers  # noqa: E402

from mpiqa.training.probe import fit_probe  # noqa: E402

logging.basicConfig(level=logging.WARNING)
WIDTHS = (0.5, 1.0, 2.0)  # kernel width: this times the median squared distance
PENALTIES = (0.1, 1.0, 10.0)
VIEWS = "w384+c224"

tr_names, tr_mos, tr_target, tr_sources, _ = part("train")
va_names, va_mos, va_target, va_sources, va_clean = part("val")
nb = len(va_names)
xtr, xva = features(VIEWS, "train"), features(VIEWS, "val")
mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-8)
ztr, zva = ((xtr - mean) / std).numpy(), ((xva - mean) / std).numpy()


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0)


D = squared_distances(ztr, ztr)
SCALE = float(np.median(D[np.triu_indices(len(D), 1)]))
y = np.where(np.isnan(tr_mos), tr_target, tr_mos)
w = np.where(np.isnan(tr_mos), 0.5, 1.0)


def fit_kernel(rows: np.ndarray, width: float, penalty: float):
    """Weighted kernel ridge on the training rows ``rows``: (coefficients, intercept)."""
    k = np.exp(-D[np.ix_(rows, rows)] / (width * SCALE))
    b = np.average(y[rows], weights=w[rows])
    c = np.linalg.solve(k + penalty * np.diag(1 / w[rows]), y[rows] - b)
    return rows, c, b, width


def predict_kernel(model, z: np.ndarray) -> np.ndarray:
    rows, c, b, width = model
    return np.exp(-squared_distances(z, ztr[rows]) / (width * SCALE)) @ c + b


def choose(rows: np.ndarray, folds: int = 5, seed: int = 0):
    """(width, penalty) whose out-of-fold predictions rank the rated rows best."""
    rated = rows[~np.isnan(tr_mos[rows])]
    synthetic = rows[np.isnan(tr_mos[rows])]
    parts = np.array_split(np.random.default_rng(seed).permutation(rated), folds)
    best, best_score = None, -np.inf
    for width in WIDTHS:
        for penalty in PENALTIES:
            scores = []
            for k in range(folds):
                train = np.concatenate([*(parts[i] for i in range(folds) if i != k), synthetic])
                model = fit_kernel(train, width, penalty)
                scores.append(srcc(predict_kernel(model, ztr[parts[k]]), tr_mos[parts[k]]))
            if np.mean(scores) > best_score:
                best, best_score = (width, penalty), float(np.mean(scores))
    return best, best_score


def fit_linear(rows: np.ndarray, within: float):
    sources = list(np.array(tr_sources, object)[rows])
    probe, _ = fit_probe(
        xtr[rows], torch.from_numpy(tr_mos[rows]), torch.from_numpy(tr_target[rows]), 0.5,
        (1000.0, 10000.0, 100000.0), sources=sources, within=within,
    )  # fmt: skip
    return lambda x: probe(x.float()).double().numpy()


everything = np.arange(len(y))
(width, penalty), cv = choose(everything)
print(f"kernel: width {width} x median, penalty {penalty} (CV SRCC {cv:.4f})", flush=True)
kernel = predict_kernel(fit_kernel(everything, width, penalty), zva)
probes = {
    "kernel": kernel,
    "linear, across sources": fit_linear(everything, 0.0)(xva),
    "linear, shipped rule": fit_linear(everything, 0.5)(xva),
}
rated_count = len(tr_names)
x_all = torch.cat([xtr[:rated_count], xva[:nb]])
z_all = np.concatenate([ztr[:rated_count], zva[:nb]])
mos_all = np.concatenate([tr_mos[:rated_count], va_mos[:nb]])
src_all = np.array(tr_sources[:rated_count] + va_sources[:nb])
left_out: dict = {name: {} for name in probes}
for s in ("ss01", "ss02", "ss03"):
    keep = np.flatnonzero([v != s for v in tr_sources])
    test = src_all == s
    params, _ = choose(keep)
    left_out["kernel"][s] = predict_kernel(fit_kernel(keep, *params), z_all[test])
    left_out["linear, across sources"][s] = fit_linear(keep, 0.0)(x_all[test])
    left_out["linear, shipped rule"][s] = fit_linear(keep, 0.5)(x_all[test])
    print(f"{s} left out: kernel width {params[0]}, penalty {params[1]}", flush=True)

tower_val, tower_syn = towers["val"][:, 0], towers["syn"][:, 0]
mix = {
    n: (0.5 * tower_val + 0.5 * p[:nb], 0.5 * tower_syn + 0.5 * p[nb:]) for n, p in probes.items()
}
y_val, y_syn = va_mos[:nb], va_target[nb:]
for name, p in probes.items():
    print(
        f"{name}: probe alone val {srcc(p[:nb], y_val):.4f}, held-apart {srcc(p[nb:], y_syn):.4f}; "
        f"mix val {srcc(mix[name][0], y_val):.4f}, held-apart {srcc(mix[name][1], y_syn):.4f}; "
        "left out (probe alone) "
        + " / ".join(f"{s} {srcc(v, mos_all[src_all == s]):.4f}" for s, v in left_out[name].items())
    )
rng = np.random.default_rng(0)
for base in ("linear, across sources", "linear, shipped rule"):
    print(f"\nkernel − {base} (paired, 1,000 resamples)")
    print("  mix, val:", paired_difference(mix["kernel"][0], mix[base][0], y_val, rng))
    print(
        "  mix, held-apart:",
        paired_difference(mix["kernel"][1], mix[base][1], y_syn, rng, groups=va_clean),
    )
    for s in ("ss01", "ss02", "ss03"):
        ya = mos_all[src_all == s]
        print(
            f"  probe alone, {s} left out:",
            paired_difference(left_out["kernel"][s], left_out[base][s], ya, rng),
        )
