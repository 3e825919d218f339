"""Labelled distortion tasks for meta-prompt pre-training: one task per distortion type,
each with a support and a query part, built from any folder of clean images.

The quality target falls with level: ``1 - level / 6``, so 1.0 for the pristine image
(level 0) down to 1/6 at level 5. No single scale fits every type, but within a task
the ranking is right, and ranking is what the task learner has to get.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch.utils.data import Dataset

from mpiqa.data.distortions.kadid import DISTORTION_NAMES, N_LEVELS, distort, get_distortion
from mpiqa.data.images import load_image
from mpiqa.data.transforms import center_crop, normalize, resize_shorter_side, to_tensor


def level_quality(level: int, n_levels: int = N_LEVELS) -> float:
    """Quality target of a distortion level (0 = pristine)."""
    return 1.0 - level / (n_levels + 1)


@dataclass(frozen=True)
class DistortedItem:
    source: str
    distortion: str
    level: int  # 0 = pristine
    seed: int

    @property
    def target(self) -> float:
        return level_quality(self.level)


@dataclass(frozen=True)
class DistortionTask:
    distortion: str
    support: tuple[DistortedItem, ...]
    query: tuple[DistortedItem, ...]


def make_tasks(
    sources: Sequence[str],
    distortions: Sequence[str] = DISTORTION_NAMES,
    n_support: int = 10,
    n_query: int = 10,
    include_pristine: bool = True,
    seed: int = 0,
) -> list[DistortionTask]:
    """One task per distortion type. Support and query draw from disjoint halves of
    ``sources`` (so the query measures adaptation to new images), each item at a random
    level; every level appears before any repeats.

    Raises:
        ValueError: fewer than 2 source images, or an unknown distortion.
    """
    if len(sources) < 2:
        raise ValueError(f"need at least 2 clean images to build tasks, got {len(sources)}")
    levels = list(range(0 if include_pristine else 1, N_LEVELS + 1))
    tasks = []
    for name in distortions:
        kind = get_distortion(name)
        rng = random.Random(f"{seed}:{kind.index}")
        shuffled = list(sources)
        rng.shuffle(shuffled)
        half = len(shuffled) // 2
        parts = []
        for pool, count in ((shuffled[:half], n_support), (shuffled[half:], n_query)):
            cycle = [
                lv
                for _ in range(count // len(levels) + 1)
                for lv in rng.sample(levels, len(levels))
            ]
            parts.append(
                tuple(
                    DistortedItem(pool[i % len(pool)], name, cycle[i], rng.randrange(2**31))
                    for i in range(count)
                )
            )
        tasks.append(DistortionTask(name, parts[0], parts[1]))
    return tasks


def clean_image(source: str, size: int, cache: dict | None = None) -> Image.Image:
    """The source resized (shorter side ``size``) and centre cropped, decoded once per
    cache."""
    key = (source, size)
    if cache is not None and key in cache:
        return cache[key]
    image = center_crop(resize_shorter_side(load_image(source), size), size)
    if cache is not None:
        cache[key] = image
    return image


def render(item: DistortedItem, size: int, cache: dict | None = None) -> Image.Image:
    """The distorted image. The source is resized and cropped *before* distorting, so the
    distortion shows at the model's input scale."""
    clean = clean_image(item.source, size, cache)
    if item.level == 0:
        return clean
    pixels = distort(clean, item.distortion, item.level, seed=item.seed)
    return Image.fromarray((pixels * 255 + 0.5).astype("uint8"))


class DistortedDataset(Dataset):
    """Items ``{"pixels", "score", "distortion", "level"}`` rendered on the fly."""

    def __init__(
        self, items: Sequence[DistortedItem], size: int = 224, cache: dict | None = None
    ) -> None:
        self.items = list(items)
        self.size = size
        self.cache = cache
        self.distortion_ids = {name: i for i, name in enumerate(DISTORTION_NAMES)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        return {
            "pixels": normalize(to_tensor(render(item, self.size, self.cache))),
            "score": torch.tensor(item.target),
            "distortion": self.distortion_ids[item.distortion],
            "level": item.level,
        }
