"""Distorted twins of real photos as a ranking signal for the towers.

The towers learn what distortions do from 88 clean images only (Kodak24, CBSD68,
McMaster); in-the-wild photos are far more varied. Here every rated training photo
also gets one distorted twin (a random blur, noise, compression or pixelation type at
level 2-5 of mpiqa's KADID-style generator, applied at the towers' 384 input as the
synthetic rows are), and a pairwise fidelity term asks the towers to score the photo
above its twin (RankIQA's idea on the training photos themselves: no label is added,
the twin's MOS is never guessed).

    python recipes/experiments/real_distortions/twins.py MODE HELD [SEED]

MODE: ``base`` (the recipe's towers) or ``twins`` (plus the pair term; the environment
variables below change its twins, ``CONFIG`` one setting of the recipe for either mode,
``SYNTH_PER_IMAGE`` the number of distorted versions of each training clean image, and
``SYNTH_RANK`` adds to ``base`` a rank term within each clean image's versions,
``RATED_KEEP`` trains on that many of the kept rated photos, ``EXTRA_CLEAN`` adds that
many of the best-rated kept training photos as clean images for synthetic rows);
HELD: ``none`` (train on the shipped split) or ``ss01`` / ``ss02`` / ``ss03`` (that
BIQ2021 source's rated rows left out of training and selection, tested on all its
images); SEED: the recipe's seed (its synthetic draws, initialisation and twins). The
held-apart clean images are seed 0's for every seed, so all runs are judged on the same
images. Writes ``runs/real_distortions/TAG.pt`` (scores by part) and ``TAG.json``, TAG
being MODE, the variant, HELD and the seed; the stem's maps are cached in
``runs/real_distortions/cache``. Needs only the package and
../shared. One-off measurement (2026-12-01), not part of the package or the recipe.
"""

import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "native_view"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "biq_sources"))
from bootstrap import srcc  # noqa: E402
from shipped_parts import rated_rows, synthetic  # noqa: E402

import mpiqa.training.pretrain as P  # noqa: E402
from mpiqa.backbones.efficientnet import default_weights_path, load_stem_weights  # noqa: E402
from mpiqa.backbones.factory import build_random_clip  # noqa: E402
from mpiqa.data.distortions.tasks import DistortedItem  # noqa: E402
from mpiqa.training.pretrain import FeatureSet, PretrainConfig  # noqa: E402

FIELDS = ("features", "mos", "synthetic_target", "distortion")

# degradations whose direction does not depend on the photo (brightness, contrast,
# colour and sharpening changes can improve a dull or dark photo, so they are left out)
TYPES = (
    "gaussian_blur", "lens_blur", "motion_blur", "jpeg", "jpeg2000", "white_noise",
    "white_noise_color", "impulse_noise", "multiplicative_noise", "denoise", "pixelate",
)  # fmt: skip
# TWIN_LEVELS=1,2 PAIR_WEIGHT=0.25 in the environment: milder twins, a lighter term
LEVELS = tuple(int(v) for v in os.environ.get("TWIN_LEVELS", "2,3,4,5").split(","))
PAIR_WEIGHT = float(os.environ.get("PAIR_WEIGHT", "1.0"))
# CONFIG='{"distortion_weight": 0}' in the environment: one recipe setting changed
OVERRIDES = json.loads(os.environ.get("CONFIG", "{}"))
# SYNTH_PER_IMAGE=60: more distorted versions of each training clean image (recipe: 30)
PER_IMAGE = int(os.environ.get("SYNTH_PER_IMAGE", "30"))
# SYNTH_RANK=1: a rank fidelity term over pairs of synthetic rows of one clean image (their
# order is known exactly), with this weight; base mode only
SYNTH_RANK = float(os.environ.get("SYNTH_RANK", "0"))
# RATED_KEEP=1306: train on this many of the kept rated training photos (a fixed random
# subset, the same for every seed and setting; validation rows unchanged), to tell a
# fold's number of rated photos apart from which source it leaves out
RATED_KEEP = int(os.environ.get("RATED_KEEP", "0"))
# EXTRA_CLEAN=88: the kept rated training photos with the highest MOS (this many; the held
# source's never) become clean images too, each distorted SYNTH_PER_IMAGE times like the
# pristine ones (their undistorted rows are left out: they are rated rows already), to
# test whether the synthetic rows' cost on unseen photos comes from their few contents
EXTRA_CLEAN = int(os.environ.get("EXTRA_CLEAN", "0"))
SOURCES = ("ss01", "ss02", "ss03")
OUT = Path("runs/real_distortions")

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
mode, held = sys.argv[1], sys.argv[2]
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
assert mode in ("base", "twins") and held in ("none", *SOURCES)
assert not (SYNTH_RANK and mode == "twins"), "SYNTH_RANK is for base mode"
assert not (SYNTH_RANK and EXTRA_CLEAN), "SYNTH_RANK ranks within the pristine images only"


def twin_items(paths: list[str], seed: int) -> list[DistortedItem]:
    rng = random.Random(seed)
    return [
        DistortedItem(p, rng.choice(TYPES), rng.choice(LEVELS), rng.randrange(2**31)) for p in paths
    ]


def subset(fs: FeatureSet, idx: list[int]) -> FeatureSet:
    i = torch.as_tensor(idx, dtype=torch.long)
    return FeatureSet(fs.features[i], fs.mos[i], fs.synthetic_target[i], fs.distortion[i])


rated, source = rated_rows()
synth_train, synth_val = synthetic(seed, PER_IMAGE)

torch.manual_seed(seed)
config = PretrainConfig(seed=seed, **OVERRIDES)
model = build_random_clip(config.arch, seed=seed)
weights = default_weights_path(model.visual.config.stem)
load_stem_weights(model.visual.stem, weights)
size, cache = model.image_size, OUT / "cache"
train = P.cached_features(cache, model, rated["train"], synth_train, size, weights, seed)
val = P.cached_features(cache, model, rated["val"], synth_val, size, weights, 0)
twin = {
    k: P.cached_features(
        cache, model, (), twin_items([p for p, _ in rated[k]], 1000 * (k == "val") + seed),
        size, weights, seed,
    )
    for k in ("train", "val")
}  # fmt: skip
n_tr, n_va = len(rated["train"]), len(rated["val"])
keep_tr = [i for i, s in enumerate(source["train"]) if s != held] + list(range(n_tr, len(train)))
if EXTRA_CLEAN:
    kept = [i for i in range(n_tr) if source["train"][i] != held]
    best = sorted(kept, key=lambda i: (-rated["train"][i][1], rated["train"][i][0]))[:EXTRA_CLEAN]
    drawn = P.synthetic_items([rated["train"][i][0] for i in sorted(best)], PER_IMAGE, seed)
    extra = P.cached_features(
        cache, model, (), [it for it in drawn if it.level > 0], size, weights, seed
    )
    keep_tr += list(range(len(train), len(train) + len(extra.mos)))
    train = FeatureSet(*(torch.cat([getattr(train, f), getattr(extra, f)]) for f in FIELDS))
keep_va = [i for i, s in enumerate(source["val"]) if s != held] + list(range(n_va, len(val)))
if RATED_KEEP:
    rated_kept = [i for i in keep_tr if i < n_tr]
    assert RATED_KEEP <= len(rated_kept), f"RATED_KEEP={RATED_KEEP}: only {len(rated_kept)} kept"
    keep_tr = sorted(random.Random(0).sample(rated_kept, RATED_KEEP)) + keep_tr[len(rated_kept) :]
train_set, val_set = subset(train, keep_tr), subset(val, keep_va)

if mode == "twins":
    # rated training rows carry their row number as distortion = -2 - row, so the loss
    # can fetch their twins; the recipe's loss sees -1 (no distortion label) as before
    row = torch.tensor([i for i in keep_tr if i < n_tr])
    train_set.distortion = train_set.distortion.clone()
    train_set.distortion[: len(row)] = -2 - row
    recipe_loss, expected_level = P._batch_loss, P.expected_level
    last: dict = {}

    def spy(*args, **kwargs):
        last["score"] = expected_level(*args, **kwargs)
        return last["score"]

    def batch_loss(model, feats, mos_, target, distortion, config):
        has = distortion < -1
        twins = twin["train"].features[(-2 - distortion[has]).cpu()].to(feats.device)
        flip = torch.rand(len(twins), device=feats.device) < 0.5
        twins = torch.where(flip.view(-1, 1, 1, 1), twins.flip(-1), twins)
        n, nan = len(feats), torch.full((len(twins),), float("nan"), device=feats.device)
        total, losses = recipe_loss(
            model,
            torch.cat([feats, twins]),
            torch.cat([mos_, nan]),
            torch.cat([target, nan]),
            torch.cat([distortion.clamp(min=-1), torch.full_like(nan, -1, dtype=torch.long)]),
            config,
        )
        score = last["score"]
        if len(twins):
            d = score[:n][has] - score[n:]
            p = 0.5 * (1 + torch.erf(d / 2))  # fidelity with the photo always the better
            losses["pair"] = PAIR_WEIGHT * (1 - torch.sqrt(p + 1e-8)).mean()
            total = total + losses["pair"]
        return total, losses

    P.expected_level, P._batch_loss = spy, batch_loss

if SYNTH_RANK:
    # the loss sees no row numbers, so each synthetic training row's clean image rides in
    # its target as target + 2 * image (targets lie in [0, 1]) and is taken back out there
    image_of = {c: i for i, c in enumerate(dict.fromkeys(it.source for it in synth_train))}
    n_kept = len(keep_tr) - len(synth_train)
    train_set.synthetic_target = train_set.synthetic_target.clone()
    train_set.synthetic_target[n_kept:] += 2 * torch.tensor(
        [image_of[it.source] for it in synth_train], dtype=train_set.synthetic_target.dtype
    )
    recipe_loss, expected_level = P._batch_loss, P.expected_level
    last = {}

    def spy(*args, **kwargs):
        last["score"] = expected_level(*args, **kwargs)
        return last["score"]

    def batch_loss(model, feats, mos_, target, distortion, config):
        image = torch.floor(target / 2)
        total, losses = recipe_loss(model, feats, mos_, target - 2 * image, distortion, config)
        synth = ~torch.isnan(target)
        s, t, g = last["score"][synth], (target - 2 * image)[synth], image[synth]
        pair = (g[:, None] == g[None, :]) & (t[:, None] > t[None, :])  # i better than j
        if pair.any():
            p = 0.5 * (1 + torch.erf((s[:, None] - s[None, :])[pair] / 2))
            losses["synth_rank"] = SYNTH_RANK * (1 - torch.sqrt(p + 1e-8)).mean()
            total = total + losses["synth_rank"]
        return total, losses

    P.expected_level, P._batch_loss = spy, batch_loss

start = time.time()
state, history = P.train_on_features(model, train_set, val_set, config)
model.load_state_dict(state)
model.eval()


@torch.no_grad()
def score(features: torch.Tensor) -> torch.Tensor:
    text = P.class_embeddings(model, P.quality_captions(), len(P.QUALITY_TEMPLATES))
    return torch.cat(
        [
            P.expected_level(
                P._encode_features(model, features[i : i + 256]), text, model.logit_scale.exp()
            )
            for i in range(0, len(features), 256)
        ]
    ).double()


best = max(history, key=lambda h: h["srcc"])
out = {
    "mode": mode,
    "levels": LEVELS,
    "pair_weight": PAIR_WEIGHT,
    "config": OVERRIDES,
    "synthetic_per_image": PER_IMAGE,
    "synthetic_rank": SYNTH_RANK,
    "rated_keep": RATED_KEEP,
    "extra_clean": EXTRA_CLEAN,
    "held": held,
    "seed": seed,
    "best": best,
    "seconds": round(time.time() - start),
}
scores = {
    "val": score(val.features[:n_va]),
    "val_mos": val.mos[:n_va].double(),
    "val_source": source["val"],
    "synthetic": score(val.features[n_va:]),
    "synthetic_target": val.synthetic_target[n_va:].double(),
    "synthetic_clean": [it.source for it in synth_val],
    "val_twins": score(twin["val"].features),
}
out["val_srcc"] = srcc(scores["val"], scores["val_mos"])
out["synthetic_srcc"] = srcc(scores["synthetic"], scores["synthetic_target"])
out["val_twins_below"] = float((scores["val_twins"] < scores["val"]).double().mean())
for s in SOURCES:
    m = torch.tensor([t == s for t in source["val"]])
    out[f"val_{s}"] = srcc(scores["val"][m], scores["val_mos"][m])
if held != "none":
    test_tr = [i for i, s in enumerate(source["train"]) if s == held]
    test_va = [i for i, s in enumerate(source["val"]) if s == held]
    scores["held"] = score(torch.cat([train.features[test_tr], val.features[test_va]]))
    scores["held_mos"] = torch.cat([train.mos[test_tr], val.mos[test_va]]).double()
    out["held_srcc"] = srcc(scores["held"], scores["held_mos"])
logging.info("%s", out)
OUT.mkdir(parents=True, exist_ok=True)
variant = (
    ""
    if (LEVELS, PAIR_WEIGHT) == ((2, 3, 4, 5), 1.0)
    else f"-l{''.join(map(str, LEVELS))}w{PAIR_WEIGHT:g}"
)
variant = (variant if mode == "twins" else "") + "".join(f"-{k}{v}" for k, v in OVERRIDES.items())
variant += f"-rated{RATED_KEEP}" if RATED_KEEP else ""
variant += f"-extra{EXTRA_CLEAN}" if EXTRA_CLEAN else ""
variant += f"-synth{PER_IMAGE}" if PER_IMAGE != 30 else ""
variant += f"-srank{SYNTH_RANK:g}" if SYNTH_RANK else ""
tag = f"{mode}{variant}_{held}_s{seed}"
(OUT / f"{tag}.json").write_text(json.dumps({**out, "history": history}, indent=1))
torch.save(scores, OUT / f"{tag}.pt")
