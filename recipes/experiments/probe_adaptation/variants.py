"""Few-shot adaptation of the linear probe on a source the towers and the probe never saw:
N labels of the held source (10 seeded rounds), a ridge on the residual of the shipped
probe (fixed penalties, or chosen by 5-fold CV within the N labels with 'keep' as an
option), the score 1/2 towers + 1/2 adapted probe, against the unadapted mix on the rest of
the source.  python variants.py N  (after prepare.py)"""

import sys

import numpy as np
import torch
from scipy.stats import spearmanr

D = torch.load("runs/probe_adaptation/loso.pt", weights_only=True)


def r(a, b):
    return spearmanr(a, b)[0]


def fit_delta(z, e, alpha):
    zz = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1)
    pen = alpha * torch.eye(zz.shape[1], dtype=z.dtype)
    pen[-1, -1] = 0
    return torch.linalg.solve(zz.T @ zz + pen, zz.T @ e)


def apply(z, c):
    return (z @ c[:-1] + c[-1]).numpy()


def adapted(alpha, zs, es, zt):
    return apply(zt, fit_delta(zs, es, alpha))


def method_fixed(alpha):
    def m(z, base, tow, y, sh, te, rnd):
        e = torch.tensor(y[sh] - base[sh])
        return base[te] + adapted(alpha, z[sh], e, z[te])

    return m


def method_cv(alphas, folds=5):
    def m(z, base, tow, y, sh, te, rnd):
        n = len(sh)
        idx = np.random.default_rng(rnd).permutation(n)
        parts = np.array_split(idx, folds)
        best, bs = None, None
        for a in [None] + alphas:
            s = []
            for pt in parts:
                tr = np.setdiff1d(idx, pt)
                p = base[sh][pt] + (
                    0
                    if a is None
                    else adapted(a, z[sh][tr], torch.tensor(y[sh][tr] - base[sh][tr]), z[sh][pt])
                )
                s.append(r(0.5 * np.clip(p, 0, 1) + 0.5 * tow[sh][pt], y[sh][pt]))
            s = np.mean(s)
            if bs is None or s > bs:
                best, bs = a, s
        return base[te] + (
            0 if best is None else adapted(best, z[sh], torch.tensor(y[sh] - base[sh]), z[te])
        )

    return m


methods = {f"a{a:g}": method_fixed(a) for a in (1e3, 1e4, 3e4, 1e5)}
methods["cv>=1e3"] = method_cv([1e3, 1e4, 1e5])
N = int(sys.argv[1])
for name, m in methods.items():
    line = f"N={N} {name:8s}"
    for held, d in D.items():
        z, base, tow, y = d["z"], d["base"].numpy(), d["tow"].numpy(), d["y"].numpy()
        g = []
        for rnd in range(10):
            perm = np.random.default_rng(100 + rnd).permutation(len(y))
            sh, te = perm[:N], perm[N:]
            p = m(z, base, tow, y, sh, te, rnd)
            g.append(
                r(0.5 * np.clip(p, 0, 1) + 0.5 * tow[te], y[te])
                - r(0.5 * np.clip(base[te], 0, 1) + 0.5 * tow[te], y[te])
            )
        g = np.array(g)
        line += f" | {held} {np.median(g):+.4f} ({int((g < 0).sum())}/10 below)"
    print(line, flush=True)
