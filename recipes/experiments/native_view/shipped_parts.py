"""The shipped mpiqa-small's data parts, rebuilt from the package and ../shared alone: its
BIQ2021 split with the MOS, and the synthetic rows as `pretrain-backbone
--val-clean-fraction 0.2 --seed 0` draws them. Shared by the scripts here."""

import csv
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "biq_sources"))
from bootstrap import paired_difference, srcc  # noqa: E402

from mpiqa.data.distortions.tasks import DistortedItem, level_quality, render  # noqa: E402
from mpiqa.data.files import discover_images  # noqa: E402
from mpiqa.data.images import load_image  # noqa: E402
from mpiqa.models.quality_levels import _readout  # noqa: E402
from mpiqa.training.pretrain import synthetic_items  # noqa: E402

DATA = Path("/work/shared/data")
BIQ = DATA / "biq2021"


def split() -> dict:
    """The shipped split (`train` and `val`: paths relative to BIQ)."""
    return json.loads(Path("src/mpiqa/weights/mpiqa-small-split.json").read_text())


def mos_by_name() -> dict[str, float]:
    """BIQ2021's MOS by file name."""
    with open(BIQ / "Train (Images and MOS).csv") as f:
        return {r["Image Name"]: float(r["MOS"]) for r in csv.DictReader(f)}


def rated_rows() -> tuple[dict, dict]:
    """The shipped split as ``(path, MOS)`` rows and as each row's source (``ss01`` …),
    both keyed by part (``train``, ``val``), in the split's order."""
    parts, mos = split(), mos_by_name()
    names = {k: [n.split("/")[-1] for n in parts[k]] for k in ("train", "val")}
    rated = {k: [(str(BIQ / n), mos[n.split("/")[-1]]) for n in parts[k]] for k in names}
    return rated, {k: [m[:4] for m in v] for k, v in names.items()}


def synthetic(
    seed: int = 0, per_image: int = 30
) -> tuple[list[DistortedItem], list[DistortedItem]]:
    """Seed 0's synthetic training rows (or ``seed``'s draws from the same clean images,
    ``per_image`` distorted versions of each) and the held-apart ones (seed 0's
    validation rows, always 30 per image)."""
    clean = [str(f) for f in discover_images([str(DATA / "pristine")], recursive=True).files]
    shuffled = sorted(clean)
    random.Random(0).shuffle(shuffled)  # the split seed, as pretrain-backbone shuffles
    held = set(shuffled[: round(len(shuffled) * 0.2)])
    train = synthetic_items([c for c in clean if c not in held], per_image, seed)
    val = synthetic_items([c for c in clean if c in held], 30, 1)
    assert len(train) == 88 * (per_image + 1) and len(val) == 682
    return train, val


def score_parts(parts, model, shipped: tuple[int, int], name: str) -> tuple[np.ndarray, np.ndarray]:
    """``parts(images)`` (per image, a row of scores) on BIQ2021's validation part, decoded
    as `mpiqa score` decodes it, and on the held-apart distortions rendered at 512.
    Checks that ½ : ½ of the columns ``shipped`` (towers, probe) is ``model``'s score, and
    keeps both in runs/native_view/NAME.npz (plain arrays: np.load reads them, no pickle)."""
    names, items = val_names(), synthetic()[1]
    val = parts([load_image(BIQ / "Images" / n, min_side=model.decode_min_side) for n in names])
    check = model.score([BIQ / "Images" / n for n in names[:32]]).double().numpy()
    mix = 0.5 * val[:32, shipped[0]] + 0.5 * val[:32, shipped[1]]
    assert np.abs(mix - check).max() < 1e-5, "not the shipped score"
    cache: dict = {}
    syn = parts([render(item, 512, cache) for item in items])
    Path("runs/native_view").mkdir(parents=True, exist_ok=True)
    np.savez(
        f"runs/native_view/{name}.npz",
        names=np.array(names),
        val=val,
        syn=syn,
        items=np.array([i.source for i in items]),
    )
    return val, syn


def tower_scores(model, features):
    """The mean of ``model``'s towers' scores on the stem's maps ``features``, as
    ``QualityLevelsIQA.forward`` computes it (for maps of views it does not take)."""
    visual = model.backbone.visual
    image = visual.pool(visual.transformer(visual.embed_features(features), keep=1))
    scores = [_readout(image, model.level_text, model.backbone.logit_scale)]
    return torch.stack(scores + [head(features) for head in model.extra_heads]).mean(0)


def probe_and_crop_maps(model, pixels, wide):
    """The shipped probe's score of ``pixels`` (the model's input) given the stem's maps
    ``wide`` of its towers' view, and the stem's maps of its centre crop view."""
    visual = model.backbone.visual
    side = model.probe.detail
    top = round((pixels.shape[-1] - side) / 2)
    fine = visual.stem_features(pixels[..., top : top + side, top : top + side])
    stats = torch.cat([visual.global_statistics(wide), visual.global_statistics(fine)], 1)
    return model.probe(stats), fine


def val_names() -> list[str]:
    """File names of the shipped validation part, in the split's order."""
    return [k.split("/")[-1] for k in split()["val"]]


def compare(val: dict, syn: dict, base_of, seed: int = 0) -> None:
    """Print each score's SRCC on the validation part (against the MOS) and the
    held-apart distortions (against the level targets), and its paired difference
    (bootstrap, 1,000) from ``base_of(name)`` over all images, within each source, and
    over the held-apart clean images with their versions. ``val``/``syn``: name ->
    scores in :func:`score_parts`'s order."""
    names, items = val_names(), synthetic()[1]
    mos_of = mos_by_name()
    mos = np.array([mos_of[n] for n in names])
    source = np.array([n[:4] for n in names])
    target = np.array([level_quality(item.level) for item in items])
    groups = np.array([item.source for item in items])
    rng = np.random.default_rng(seed)
    for name in val:
        print(f"{name}: val {srcc(val[name], mos):.4f}, held-apart {srcc(syn[name], target):.4f}")
        base = base_of(name)
        if name == base:
            continue
        print("  val:", paired_difference(val[name], val[base], mos, rng))
        for s in ("ss01", "ss02", "ss03"):
            k = source == s
            print(f"  within {s}:", paired_difference(val[name][k], val[base][k], mos[k], rng))
        held_apart = paired_difference(syn[name], syn[base], target, rng, groups=groups)
        print("  held-apart (over clean images):", held_apart)
