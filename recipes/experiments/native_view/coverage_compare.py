"""Probes on the views of `coverage.py`, each fitted by the shipped rule (`fit_probe`:
synthetic rows at half weight, half of it within sources, penalty by cross-validation
over the rated rows), against the shipped pair of views (384 + the centre 224 crop).

Per view set: the probe alone and ½ the shipped five towers + ½ the probe (the towers'
scores from `crop_towers.py`'s runs/native_view/crop_towers.npz) on BIQ2021's validation
part (all, and within each source) and on the held-apart distortions (rendered at 512);
and the probe alone on each left-out source (fitted on the other two sources' training
rows and every synthetic training row, tested on all of that source's 5,000-image rows).
Paired bootstrap, 1,000 resamples (the held-apart part by clean image).

    python recipes/experiments/native_view/coverage_compare.py [SET ...]

where SET is views joined by '+' (default: the sets below), optionally followed by ':log'
(each view's deviations replaced by their logarithm before the probe standardises them),
':rank' (each rated row's target its MOS's rank within its source, scaled to [0, 1]) or
':z' (the MOS standardised within its source, then put back on the pooled MOS's mean and
deviation); the last two change the probe's targets only, never what it is judged on.
A SET may end in '@ALPHA': both ridges then take that penalty instead of the CV's choice.
A view may end in '^K' (`w384+c224+nss^30`): its columns then enter K times, which for a
ridge on standardised features is that view's penalty divided by K (the probe's fit
has one penalty for all columns; 42 `nss` numbers beside 3,072 would otherwise count
for little). A view may end in '~STAGES' (`w384~7+c224~7`): without the columns of those
stem stages (2-7; each stage's means and deviations)."""

import logging
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "biq_sources"))
from bootstrap import paired_difference, srcc  # noqa: E402
from views import features, part, towers  # noqa: E402

from mpiqa.training.probe import fit_probe  # noqa: E402

logging.basicConfig(level=logging.WARNING)
ALPHAS = (1000.0, 10000.0, 100000.0)  # the shipped probe's CV chose 10,000 on every fold
SHIPPED = "w384+c224"
SETS = sys.argv[1:] or [
    SHIPPED,
    "w384+mosaic112",
    "w384+quad112",
    "w384+quad160",
    "w384+c320",
    "w384+c224+quad112",
]
tr_names, tr_mos, tr_target, tr_sources, _ = part("train")
va_names, va_mos, va_target, va_sources, va_clean = part("val")
assert va_names == [str(n) for n in towers["names"]]
nb = len(va_names)
va_src = np.array([s or "" for s in va_sources])
tower_val, tower_syn = towers["val"][:, 0], towers["syn"][:, 0]
shipped_probe = towers["val"][:, 2]


def within_source(mos, sources, how: str) -> np.ndarray:
    """The rated rows' targets with each source's MOS ranked (``rank``) or standardised
    (``z``) within that source; NaN (synthetic) rows and ``how == ""`` left as they are."""
    out = mos.copy()
    if how not in ("rank", "z"):
        return out
    sources = np.array([s or "" for s in sources])
    rated = ~np.isnan(mos)
    for s in np.unique(sources[rated]):
        k = rated & (sources == s)
        if how == "rank":
            out[k] = (rankdata(mos[k]) - 1) / max(k.sum() - 1, 1)
        else:
            out[k] = (mos[k] - mos[k].mean()) / mos[k].std() * mos[rated].std() + mos[rated].mean()
    return out


def fit(x, mos, target, sources, how: str = "", alphas=ALPHAS):
    """The shipped rule: synthetic rows at half weight, half of the probe within sources."""
    mos = torch.from_numpy(within_source(mos, sources, how))
    return fit_probe(x, mos, torch.from_numpy(target), 0.5, alphas, sources=sources, within=0.5)


def predict(probe, x) -> np.ndarray:
    return probe(x.float()).double().numpy()


rng = np.random.default_rng(0)
results = {}
for views in SETS:
    spec, _, alpha = views.partition("@")
    alphas = (float(alpha),) if alpha else ALPHAS
    how = spec.partition(":")[2]
    xtr, xva = features(spec, "train"), features(spec, "val")
    probe, summary = fit(xtr, tr_mos, tr_target, tr_sources, how, alphas)
    p = predict(probe, xva)
    val_mix = 0.5 * tower_val + 0.5 * p[:nb]
    syn_mix = 0.5 * tower_syn + 0.5 * p[nb:]
    # left-out sources: every rated row of the source (training and validation parts)
    x_all = torch.cat([xtr[: len(tr_names)], xva[:nb]])
    mos_all = np.concatenate([tr_mos[: len(tr_names)], va_mos[:nb]])
    src_all = np.array(tr_sources[: len(tr_names)] + va_sources[:nb])
    loso = {}
    for s in ("ss01", "ss02", "ss03"):
        keep = np.array([v != s for v in tr_sources])
        fold, _ = fit(
            xtr[keep],
            tr_mos[keep],
            tr_target[keep],
            list(np.array(tr_sources, object)[keep]),
            how,
            alphas,
        )
        test = src_all == s
        loso[s] = (predict(fold, x_all[test]), mos_all[test])
    results[views] = dict(p=p, val_mix=val_mix, syn_mix=syn_mix, loso=loso)
    print(
        f"{views}: alphas {summary['alpha']:g}/{summary['alpha_within']:g}; probe alone val "
        f"{srcc(p[:nb], va_mos[:nb]):.4f}, held-apart {srcc(p[nb:], va_target[nb:]):.4f}; "
        f"mix val {srcc(val_mix, va_mos[:nb]):.4f}, held-apart {srcc(syn_mix, va_target[nb:]):.4f}; "
        "left out (probe alone) " + " / ".join(f"{s} {srcc(*loso[s]):.4f}" for s in loso),
        flush=True,
    )
    if views == SHIPPED:
        gap = np.abs(p[:nb] - shipped_probe).max()
        print(f"  against the shipped probe's scores: max |difference| {gap:.4f}")

base = results[SHIPPED]
y, t = va_mos[:nb], va_target[nb:]
groups = va_clean
for views, r in results.items():
    if views == SHIPPED:
        continue
    print(f"\n{views} − {SHIPPED} (paired, 1,000 resamples)")
    print("  mix, val:", paired_difference(r["val_mix"], base["val_mix"], y, rng))
    for s in ("ss01", "ss02", "ss03"):
        k = va_src[:nb] == s
        print(
            f"  mix, within {s}:", paired_difference(r["val_mix"][k], base["val_mix"][k], y[k], rng)
        )
    print(
        "  mix, held-apart:",
        paired_difference(r["syn_mix"], base["syn_mix"], t, rng, groups=groups),
    )
    for s in ("ss01", "ss02", "ss03"):
        (a, ya), (b, _) = r["loso"][s], base["loso"][s]
        print(f"  probe alone, {s} left out:", paired_difference(a, b, ya, rng))
