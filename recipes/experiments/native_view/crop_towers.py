"""The shipped towers also on the probe's crop view (the centre 224 crop at 512, whose stem
maps the model computes anyway), averaged with their 384 view: a test-time second view
for the towers. Scores the shipped mpiqa-small's parts image by image on BIQ2021's
validation part and on the held-apart synthetic distortions (rendered at 512), then the
paired bootstrap (1,000) of each mix against the shipped score, over all images, within
each source, and over the held-apart clean images with their versions. Needs only the
package and ../shared; writes runs/native_view/crop_towers.npz (2026-12-01, not adopted)."""

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
    """Per image: the towers on the 384 view, the towers on the crop view, the probe."""
    out = []
    for i in range(0, len(images), 32):
        pixels = torch.cat([model.preprocess(im) for im in images[i : i + 32]])
        wide = visual.stem_features(model._tower_view(pixels))
        side = model.probe.detail
        top = round((pixels.shape[-1] - side) / 2)
        fine = visual.stem_features(pixels[..., top : top + side, top : top + side])
        stats = torch.cat([visual.global_statistics(wide), visual.global_statistics(fine)], 1)
        out.append(torch.stack([towers(wide), towers(fine), model.probe(stats)], 1))
    return torch.cat(out).double().numpy()


names = [k.split("/")[-1] for k in split()["val"]]
val = parts([load_image(BIQ / "Images" / n, min_side=model.decode_min_side) for n in names])
check = model.score([BIQ / "Images" / n for n in names[:32]]).double().numpy()
assert np.abs(0.5 * val[:32, 0] + 0.5 * val[:32, 2] - check).max() < 1e-5, "not the shipped score"
items = synthetic()[1]  # the held-apart clean images' versions
cache: dict = {}
syn = parts([render(item, 512, cache) for item in items])
Path("runs/native_view").mkdir(parents=True, exist_ok=True)
np.savez(  # plain arrays: read back with np.load, no pickle
    "runs/native_view/crop_towers.npz",
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
    wide, fine, probe = p.T
    return {
        "shipped: ½ towers(384) + ½ probe": 0.5 * wide + 0.5 * probe,
        "¼ towers(384) + ¼ towers(crop) + ½ probe": 0.25 * wide + 0.25 * fine + 0.5 * probe,
        "⅓ each": (wide + fine + probe) / 3,
        "towers(384) alone": wide,
        "towers(crop) alone": fine,
    }


rng = np.random.default_rng(0)
vm, sm = mixes(val), mixes(syn)
shipped = next(iter(vm))
for name in vm:
    print(f"{name}: val {srcc(vm[name], mos):.4f}, held-apart {srcc(sm[name], target):.4f}")
    if name == shipped:
        continue
    print("  val:", paired_difference(vm[name], vm[shipped], mos, rng))
    for s in ("ss01", "ss02", "ss03"):
        k = source == s
        print(f"  within {s}:", paired_difference(vm[name][k], vm[shipped][k], mos[k], rng))
    held_apart = paired_difference(sm[name], sm[shipped], target, rng, groups=groups)
    print("  held-apart (over clean images):", held_apart)
