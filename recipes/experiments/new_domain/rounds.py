"""Few-shot adaptation of mpiqa-small to a domain unlike BIQ2021 (see prepare.py): N labels
drawn from the distortions of 17 of the 22 held-apart clean images, test SRCC on the other
5 images' 155 distortions, R rounds (contents split by the round's seed). Only the N labels
choose anything. Prints per method the median test SRCC, the median gain over the model
as shipped, rounds below it and the paired Wilcoxon p.

    python recipes/experiments/new_domain/rounds.py N [ROUNDS]
"""

import sys

import numpy as np
import torch
from scipy.stats import spearmanr, wilcoxon

d = torch.load("runs/new_domain/feats.pt", weights_only=True)
z, s0, tow, prb, y = (d[k].numpy() for k in ("z", "score", "towers", "probe", "y"))
contents = np.array(sorted(set(d["content"])))
N = int(sys.argv[1])
R = int(sys.argv[2]) if len(sys.argv) > 2 else 20
ALPHAS = (1e2, 1e3, 1e4, 1e5)


def srcc(a, b):
    return spearmanr(a, b).statistic


def ridge(X, t, alpha):
    """Coefficients and intercept of a ridge of t on X (X centred on its own mean)."""
    mu, tm = X.mean(0), t.mean()
    Xc = X - mu
    # dual form: N << features
    w = Xc.T @ np.linalg.solve(Xc @ Xc.T + alpha * np.eye(len(t)), t - tm)
    return w, tm - mu @ w


def residual_fit(idx, alpha):
    """Score = a*s0 + b + ridge(z) on the residual; its ranking = s0 + ridge(z)/a."""
    a, b = np.polyfit(s0[idx], y[idx], 1)
    r = y[idx] - (a * s0[idx] + b)
    w, c = ridge(z[idx], r, alpha)
    return lambda j: a * s0[j] + b + z[j] @ w + c


def cv_choose(idx, fitters, folds=5, seed=0):
    """The fitter whose out-of-fold predictions rank the labels best (mean fold SRCC)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(idx)
    parts = np.array_split(order, folds)
    best, best_score = None, -np.inf
    for name, fit in fitters.items():
        scores = []
        for k in range(folds):
            test = parts[k]
            train = np.concatenate([parts[i] for i in range(folds) if i != k])
            scores.append(srcc(fit(train)(test), y[test]))
        if np.mean(scores) > best_score:
            best, best_score = name, np.mean(scores)
    return best


results = {}
for r in range(R):
    rng = np.random.default_rng(1000 + r)
    test_c = set(rng.choice(contents, 5, replace=False))
    test = np.flatnonzero([c in test_c for c in d["content"]])
    pool = np.flatnonzero([c not in test_c for c in d["content"]])
    idx = rng.choice(pool, N, replace=False)
    row = {"shipped": srcc(s0[test], y[test])}
    for alpha in ALPHAS:
        row[f"residual a={alpha:g}"] = srcc(residual_fit(idx, alpha)(test), y[test])
    fitters = {"keep": lambda i: lambda j: s0[j]}
    fitters |= {f"{a:g}": (lambda i, a=a: residual_fit(i, a)) for a in ALPHAS}
    chosen = cv_choose(idx, fitters)
    row["residual, penalty by CV (or keep)"] = srcc(fitters[chosen](idx)(test), y[test])
    shares = np.linspace(0, 1, 11)
    best = max(shares, key=lambda p: srcc((1 - p) * tow[idx] + p * prb[idx], y[idx]))
    row["probe share chosen on the labels"] = srcc(
        (1 - best) * tow[test] + best * prb[test], y[test]
    )
    for k, v in row.items():
        results.setdefault(k, []).append(v)

base = np.array(results["shipped"])
print(f"N = {N}, {R} rounds; test: 155 distortions of 5 held-apart clean images per round")
print("| method | median test SRCC | median gain | rounds below | Wilcoxon p |")
print("| --- | ---: | ---: | ---: | ---: |")
for name, values in results.items():
    v = np.array(values)
    if name == "shipped":
        print(f"| mpiqa-small as shipped | {np.median(v):.4f} | | | |")
        continue
    gain = v - base
    p = wilcoxon(gain).pvalue if np.any(gain != 0) else float("nan")
    print(
        f"| {name} | {np.median(v):.4f} | {np.median(gain):+.4f} | {int((gain < 0).sum())}/{R} | {p:.2g} |"
    )
