"""Images smaller than the model's 512 input, as an in-the-wild database may hold them
(500 x 500 photos): does scoring's upscaling to 512 cost ranking, and would reading them
at their own size instead do better?

BIQ2021's validation part (as scoring's preprocessing gives them: 512 x 512) and the
held-apart synthetic distortions (rendered at 512 and at 500), scored by the shipped
mpiqa-small three ways:
  A  as they are (512; the shipped figures),
  B  resized to 500 x 500 (Pillow bicubic; synthetic: rendered at 500), then scored as
     `mpiqa score` does: the shorter side resized up to 512,
  C  the same 500 x 500 images at their own size: the towers' view resized 500 -> 384,
     the probe's centre 224 crop at 500 (no upscaling anywhere).
Paired bootstrap (1,000; the synthetic part over clean images). `small_inputs.py [SIZE]`
shrinks to SIZE instead of 500. Needs only the package and ../shared; a few minutes on 2
cores."""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "biq_sources"))
from bootstrap import paired_difference, srcc  # noqa: E402
from shipped_parts import BIQ, mos_by_name, split, synthetic  # noqa: E402

from mpiqa.data.distortions.tasks import level_quality, render  # noqa: E402
from mpiqa.data.images import load_image  # noqa: E402
from mpiqa.data.transforms import (  # noqa: E402
    center_crop,
    normalize,
    resize_shorter_side,
    to_tensor,
)
from mpiqa.models.registry import create_model  # noqa: E402

SMALL = int(sys.argv[1]) if len(sys.argv) > 1 else 500
torch.set_grad_enabled(False)
model = create_model("mpiqa-small").for_inference()


def upscaled(images) -> np.ndarray:
    """Scores as `mpiqa score` computes them (preprocessing resizes to 512)."""
    out = []
    for i in range(0, len(images), 32):
        out.append(model(torch.cat([model.preprocess(im) for im in images[i : i + 32]])))
    return torch.cat(out).double().numpy()


def own_size(images) -> np.ndarray:
    """Scores of SMALL x SMALL images read at their own size."""
    full = model.image_size
    model.image_size = SMALL  # the towers' view then scales by 384 / SMALL
    try:
        out = []
        for i in range(0, len(images), 32):
            pixels = torch.stack([normalize(to_tensor(im)) for im in images[i : i + 32]])
            out.append(model(pixels))
    finally:
        model.image_size = full
    return torch.cat(out).double().numpy()


def shrink(image: Image.Image) -> Image.Image:
    return image.resize((SMALL, SMALL), Image.Resampling.BICUBIC)


names = [k.split("/")[-1] for k in split()["val"]]
mos_of = mos_by_name()
y = np.array([mos_of[n] for n in names])
# as scoring sees them (most are 512 x 512 already): shorter side 512, centre crop 512
full = [center_crop(resize_shorter_side(load_image(BIQ / "Images" / n), 512), 512) for n in names]
small = [shrink(im) for im in full]
val = {"A": upscaled(full), "B": upscaled(small), "C": own_size(small)}
del full, small

items = synthetic()[1]
target = np.array([level_quality(item.level) for item in items])
groups = np.array([item.source for item in items])
cache: dict = {}
syn512 = [render(item, 512, cache) for item in items]
cache = {}
syn_small = [render(item, SMALL, cache) for item in items]
syn = {"A": upscaled(syn512), "B": upscaled(syn_small), "C": own_size(syn_small)}

rng = np.random.default_rng(0)
source = np.array([n[:4] for n in names])
for key in "ABC":
    print(f"{key}: val {srcc(val[key], y):.4f}, held-apart {srcc(syn[key], target):.4f}")
for new, old in (("B", "A"), ("C", "B")):
    print(f"{new} − {old}: val", paired_difference(val[new], val[old], y, rng))
    for s in ("ss01", "ss02", "ss03"):
        k = source == s
        print(f"  within {s}:", paired_difference(val[new][k], val[old][k], y[k], rng))
    print("  held-apart:", paired_difference(syn[new], syn[old], target, rng, groups=groups))
    print(f"  mean score change: val {np.mean(val[new] - val[old]):+.4f}")
