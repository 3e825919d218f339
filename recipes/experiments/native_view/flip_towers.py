"""Test-time flips for the shipped towers: each image's score averaged over its stem maps
and their mirror image (the towers trained on randomly mirrored maps, so a second view
costs five tower passes and no stem pass), or over the stem's maps of the mirrored image
(a second stem pass: the stem is not mirror-symmetric). The probe reads global statistics,
which a mirror leaves as they are for the map flip; it keeps its shipped half. Shipped
mpiqa-small, image by image, on BIQ2021's validation part and on the held-apart synthetic
distortions (rendered at 512); paired bootstrap (1,000) of each mix against the shipped
score, over all images, within each source, and over the held-apart clean images with
their versions. Needs only the package and ../shared; writes runs/native_view/flip_towers.npz.

    python recipes/experiments/native_view/flip_towers.py
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "biq_sources"))
from bootstrap import paired_difference, srcc  # noqa: E402
from shipped_parts import BIQ, mos_by_name, split, synthetic  # noqa: E402

from mpiqa.data.distortions.tasks import level_quality, render  # noqa: E402
from mpiqa.data.images import load_image  # noqa: E402
from mpiqa.models.quality_levels import _readout  # noqa: E402
from mpiqa.models.registry import create_model  # noqa: E402

torch.set_grad_enabled(False)
model = create_model("mpiqa-small").for_inference()
visual = model.backbone.visual


def towers(features):
    image = visual.pool(visual.transformer(visual.embed_features(features), keep=1))
    scores = [_readout(image, model.level_text, model.backbone.logit_scale)]
    return torch.stack(scores + [head(features) for head in model.extra_heads]).mean(0)


def parts(images):
    """Per image: the towers on the maps, on the mirrored maps, on the mirrored image's
    maps, and the probe (as shipped)."""
    out = []
    for i in range(0, len(images), 32):
        pixels = torch.cat([model.preprocess(im) for im in images[i : i + 32]])
        view = model._tower_view(pixels)
        wide = visual.stem_features(view)
        mirrored = visual.stem_features(view.flip(-1))
        side = model.probe.detail
        top = round((pixels.shape[-1] - side) / 2)
        fine = visual.stem_features(pixels[..., top : top + side, top : top + side])
        stats = torch.cat([visual.global_statistics(wide), visual.global_statistics(fine)], 1)
        out.append(
            torch.stack(
                [towers(wide), towers(wide.flip(-1)), towers(mirrored), model.probe(stats)], 1
            )
        )
    return torch.cat(out).double().numpy()


names = [k.split("/")[-1] for k in split()["val"]]
val = parts([load_image(BIQ / "Images" / n, min_side=model.decode_min_side) for n in names])
check = model.score([BIQ / "Images" / n for n in names[:32]]).double().numpy()
assert np.abs(0.5 * val[:32, 0] + 0.5 * val[:32, 3] - check).max() < 1e-5, "not the shipped score"
items = synthetic()[1]  # the held-apart clean images' versions
cache: dict = {}
syn = parts([render(item, 512, cache) for item in items])
Path("runs/native_view").mkdir(parents=True, exist_ok=True)
np.savez(  # plain arrays: read back with np.load, no pickle
    "runs/native_view/flip_towers.npz",
    names=np.array(names),
    val=val,
    syn=syn,
    items=np.array([i.source for i in items]),
)

mos_of = mos_by_name()
mos = np.array([mos_of[n] for n in names])
source = np.array([n[:4] for n in names])
target = np.array([level_quality(item.level) for item in items])
groups = np.array([item.source for item in items])


def mixes(p):
    wide, flipped_maps, mirrored_image, probe = p.T
    return {
        "shipped: ½ towers + ½ probe": 0.5 * wide + 0.5 * probe,
        "½ towers (maps + mirrored maps) + ½ probe": 0.25 * (wide + flipped_maps) + 0.5 * probe,
        "½ towers (image + mirrored image) + ½ probe": 0.25 * (wide + mirrored_image) + 0.5 * probe,
        "towers alone": wide,
        "towers alone, maps + mirrored maps": 0.5 * (wide + flipped_maps),
        "towers alone, image + mirrored image": 0.5 * (wide + mirrored_image),
    }


rng = np.random.default_rng(0)
vm, sm = mixes(val), mixes(syn)
for name in vm:
    print(f"{name}: val {srcc(vm[name], mos):.4f}, held-apart {srcc(sm[name], target):.4f}")
    base = "towers alone" if name.startswith("towers alone") else next(iter(vm))
    if name == base:
        continue
    print("  val:", paired_difference(vm[name], vm[base], mos, rng))
    for s in ("ss01", "ss02", "ss03"):
        k = source == s
        print(f"  within {s}:", paired_difference(vm[name][k], vm[base][k], mos[k], rng))
    held_apart = paired_difference(sm[name], sm[base], target, rng, groups=groups)
    print("  held-apart (over clean images):", held_apart)
print(
    "per image, |mirrored maps - maps| of the towers: val mean "
    f"{np.abs(val[:, 1] - val[:, 0]).mean():.4f}, mirrored image {np.abs(val[:, 2] - val[:, 0]).mean():.4f}"
)
