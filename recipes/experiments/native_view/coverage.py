"""Stem statistics of candidate second views for the probe that cover more of the image
than the shipped centre 224 crop (which sees the middle fifth of a 512 x 512 input).

For every row of seed 0's training and validation parts (BIQ2021 rows as split.json
orders them, then the synthetic rows as pretrain-backbone draws them, rendered at 512),
the global per-channel means and deviations of stages 2-7 (1,536 numbers) of:
  w384      the towers' 384 view (what the shipped probe's first half reads),
  c224      the centre 224 crop at 512 (the shipped second view),
  mosaic112 four 112 x 112 crops centred on the quadrants' centres, tiled into one 224
            image (the same stem cost as c224; the seams are the same in every image),
  quad112   the same four crops through the stem one by one, statistics pooled over all
            four (exact for equal crops: means averaged, second moments averaged),
  quad160   four 160 x 160 crops at the same centres, pooled (about twice c224's cost),
  c320      the centre 320 crop (about twice c224's cost: more pixels, same place),
  nss       not the stem: 42 natural-scene statistics of the whole 512 input's
            luminance, at 512 and 256 (`nss.py`; 2026-12-07).
Needs only the package and ../shared; 13 minutes on 2 cores. Writes
runs/native_view/coverage.npz (plain float64 arrays; `coverage_compare.py` reads it).

    python recipes/experiments/native_view/coverage.py [VIEW ...]   (default: all seven)"""

import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from nss import nss
from shipped_parts import BIQ, split, synthetic

from mpiqa.data.distortions.tasks import render
from mpiqa.data.images import load_image
from mpiqa.data.transforms import STATS
from mpiqa.models.registry import create_model

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
log = logging.getLogger("coverage")
torch.set_grad_enabled(False)
model = create_model("mpiqa-small").for_inference()
visual = model.backbone.visual
CENTRES = (128, 384)  # the quadrants' centres of a 512 x 512 input


def crop(pixels: torch.Tensor, cy: int, cx: int, side: int) -> torch.Tensor:
    top, left = cy - side // 2, cx - side // 2
    return pixels[..., top : top + side, left : left + side]


def stats(pixels: torch.Tensor) -> torch.Tensor:
    return visual.global_statistics(visual.stem_features(pixels.contiguous())).double()


def pooled(pixels: torch.Tensor, side: int) -> torch.Tensor:
    """Statistics over four crops at once: the mean of their means, the deviation from
    the mean of their second moments."""
    parts = [stats(crop(pixels, cy, cx, side)) for cy in CENTRES for cx in CENTRES]
    mean = torch.stack([p.chunk(2, 1)[0] for p in parts]).mean(0)
    second = torch.stack([p.chunk(2, 1)[1].square() + p.chunk(2, 1)[0].square() for p in parts])
    std = (second.mean(0) - mean.square()).clamp_min(0).sqrt()
    return torch.cat([mean, std], 1)


def mosaic(pixels: torch.Tensor, side: int) -> torch.Tensor:
    rows = [torch.cat([crop(pixels, cy, cx, side) for cx in CENTRES], dim=-1) for cy in CENTRES]
    return torch.cat(rows, dim=-2)


VIEWS = {
    "w384": lambda p: stats(model._tower_view(p)),
    "c224": lambda p: stats(crop(p, 256, 256, 224)),
    "mosaic112": lambda p: stats(mosaic(p, 112)),
    "quad112": lambda p: pooled(p, 112),
    "quad160": lambda p: pooled(p, 160),
    "c320": lambda p: stats(crop(p, 256, 256, 320)),
    "nss": lambda p: nss(p, *STATS[model.preprocess_options.get("stats", "clip")]),
}


if sys.argv[1:]:
    VIEWS = {k: VIEWS[k] for k in sys.argv[1:]}


def images(paths, items):
    for p in paths:
        yield load_image(BIQ / p, min_side=model.decode_min_side)
    cache: dict = {}
    for item in items:
        yield render(item, 512, cache)


def compute(paths, items) -> dict[str, np.ndarray]:
    out: dict[str, list] = {k: [] for k in VIEWS}
    batch, n, start = [], len(paths) + len(items), time.perf_counter()
    for i, image in enumerate(images(paths, items)):
        batch.append(model.preprocess(image))
        if len(batch) == 16 or i == n - 1:
            pixels = torch.cat(batch)
            for name, view in VIEWS.items():
                out[name].append(view(pixels))
            batch = []
        if i % 800 == 0:
            log.info("%d / %d rows, %.0f s", i, n, time.perf_counter() - start)
    return {k: torch.cat(v).numpy() for k, v in out.items()}


parts = split()
train_items, val_items = synthetic()
train = compute(parts["train"], train_items)
val = compute(parts["val"], val_items)
Path("runs/native_view").mkdir(parents=True, exist_ok=True)
np.savez(
    "runs/native_view/coverage.npz",
    train_names=np.array(parts["train"]),
    val_names=np.array(parts["val"]),
    train_items=np.array([f"{i.source}|{i.distortion}|{i.level}" for i in train_items]),
    val_items=np.array([f"{i.source}|{i.distortion}|{i.level}" for i in val_items]),
    **{f"train_{k}": v for k, v in train.items()},
    **{f"val_{k}": v for k, v in val.items()},
)
log.info("wrote runs/native_view/coverage.npz")
