"""The shipped rule's mix on the left-out folds: `twins.py` towers with a probe refitted
on the same rows, so that a change to the synthetic rows is measured as the model ships
(½ the towers' mean + ½ the two-view probe, half of it within sources), not on the
towers alone.

    python recipes/experiments/real_distortions/mix.py NEW OLD [SEED ...]

NEW and OLD are run tags as for `compare.py` (e.g. ``base-synth15 base``); their
distorted-version count is read from the tag (``-synthN``, else the recipe's 30). For
each left-out source, each tag's probe is fitted by `fit_probe` as `pretrain-backbone
--probe-within 0.5` fits it (synthetic rows at ½, penalty by cross-validation over the
rated rows) on seed 0's training rows of that fold (the kept sources' rated rows and
seed 0's synthetic draws), reading the towers' 384 view and the centre 224 crop at 512;
it is mixed with the mean of the SEEDs' towers. Paired bootstrap (1,000) on the left-out
source, the validation part and the held-apart distortions (their probe view rendered
at 512). The second view's maps are cached with the others; `base-synth15 base 0 1`
took 16 minutes on 2 cores the first time, 10 with the maps cached. One-off
measurement (2026-12-06), not part of the package or the recipe."""

import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "native_view"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "biq_sources"))
from bootstrap import paired_difference, srcc  # noqa: E402
from shipped_parts import rated_rows, synthetic  # noqa: E402

import mpiqa.training.pretrain as P  # noqa: E402
from mpiqa.backbones.efficientnet import default_weights_path, load_stem_weights  # noqa: E402
from mpiqa.backbones.factory import build_random_clip  # noqa: E402
from mpiqa.training.probe import fit_probe, global_statistics  # noqa: E402

RUNS = Path("runs/real_distortions")
SOURCES = ("ss01", "ss02", "ss03")
DETAIL, PROBE_INPUT, WITHIN = 224, 512, 0.5  # the recipe's --probe-detail/-input/-within

args = sys.argv[1:]
new, old = args[0], args[1]
seeds = [int(a) for a in args[2:]] or [0]
assert all("extra" not in t and "rated" not in t for t in (new, old)), "plain tags only"
torch.set_grad_enabled(False)

rated, source = rated_rows()
n_tr, n_va = len(rated["train"]), len(rated["val"])
config = P.PretrainConfig(seed=0)
model = build_random_clip(config.arch, seed=0)
weights = default_weights_path(model.visual.config.stem)
load_stem_weights(model.visual.stem, weights)
cache, size = RUNS / "cache", model.image_size


def both_views(rows, items) -> tuple[torch.Tensor, P.FeatureSet]:
    """Both views' global statistics of the rows and items, and the towers' view's set
    (for its targets)."""
    own = P.cached_features(cache, model, rows, items, size, weights, 0)
    detail = P.cached_features(cache, model, rows, items, PROBE_INPUT, weights, 0, crop=DETAIL)
    x = torch.cat([global_statistics(model.visual, s.features) for s in (own, detail)], 1)
    own.features = detail.features = None  # the maps are not needed any more
    return x, own


def per_image(tag: str) -> int:
    found = re.search(r"-synth(\d+)", tag)
    return int(found.group(1)) if found else 30


views = {}
for tag in (new, old):
    synth_train, synth_val = synthetic(0, per_image(tag))
    views[tag] = (both_views(rated["train"], synth_train), both_views(rated["val"], synth_val))

for held in SOURCES:
    rng = np.random.default_rng(0)
    mixes = {}
    for tag in (new, old):
        (xtr, tr), (xva, va) = views[tag]
        keep = [i for i in range(n_tr) if source["train"][i] != held]
        keep += list(range(n_tr, len(xtr)))
        probe, summary = fit_probe(
            xtr[keep], tr.mos[keep], tr.synthetic_target[keep],
            synthetic_weight=config.synthetic_weight, seed=0,
            sources=[source["train"][i] if i < n_tr else None for i in keep], within=WITHIN,
        )  # fmt: skip
        test_tr = [i for i in range(n_tr) if source["train"][i] == held]
        test_va = [i for i in range(n_va) if source["val"][i] == held]
        probe_scores = {
            "val": probe(xva[:n_va]).double(),
            "synthetic": probe(xva[n_va:]).double(),
            "held": probe(torch.cat([xtr[test_tr], xva[test_va]])).double(),
        }
        towers = [torch.load(RUNS / f"{tag}_{held}_s{s}.pt", weights_only=True) for s in seeds]
        y = {
            "val": towers[0]["val_mos"],
            "synthetic": towers[0]["synthetic_target"],
            "held": towers[0]["held_mos"],
        }
        assert torch.equal(y["held"], torch.cat([tr.mos[test_tr], va.mos[test_va]]).double())
        mixes[tag] = {}
        for part, p in probe_scores.items():
            t = torch.stack([r[part] for r in towers]).mean(0)
            mixes[tag][part] = (0.5 * t + 0.5 * p).clamp(0, 1).numpy()
        print(
            f"{held} left out, {tag}: probe alpha {summary['alpha']}, probe alone "
            f"{srcc(probe_scores['held'].numpy(), y['held'].numpy()):.4f} on {held}, "
            f"{srcc(probe_scores['val'].numpy(), y['val'].numpy()):.4f} val, "
            f"{srcc(probe_scores['synthetic'].numpy(), y['synthetic'].numpy()):.4f} held-apart"
        )
    print(f"== {new} - {old}, {held} left out, towers of seeds {seeds} + probe, 1/2 : 1/2")
    groups = towers[0]["synthetic_clean"]
    for part in ("held", "val", "synthetic"):
        a, b, t = mixes[new][part], mixes[old][part], y[part].numpy()
        g = groups if part == "synthetic" else None
        diff = paired_difference(a, b, t, rng, groups=g)
        print(f"  {part}: {srcc(a, t):.4f} vs {srcc(b, t):.4f}: {diff}")
