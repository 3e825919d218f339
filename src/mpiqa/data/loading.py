"""``torch.utils.data`` datasets over records, with seeded augmentation.

Each item's augmentation draws from its own generator, seeded by (dataset seed, epoch,
index). An epoch is therefore the same whatever the number of workers and whichever
worker loads an item, and a resumed run sees the crops the uninterrupted one saw. Call
:meth:`RecordDataset.set_epoch` before each epoch. :func:`seed_worker` also seeds
``random`` and numpy for third-party code that uses them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mpiqa.data.images import load_image
from mpiqa.data.records import Record
from mpiqa.data.transforms import center_crop, crop, normalize, resize_for_crop, to_tensor


@dataclass(frozen=True)
class TrainTransform:
    """Resize the shorter side to ``resize`` (or squash the image to ``resize`` x
    ``resize``), take a random ``size`` crop, flip horizontally with probability
    ``flip``; then normalise with ``stats`` (``clip`` or ``imagenet``)."""

    size: int = 224
    resize: int = 224
    flip: float = 0.5
    squash: bool = False
    stats: str = "clip"

    def __call__(
        self, image: Image.Image, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        image = resize_for_crop(image, self.resize, self.squash)
        width, height = image.size
        top = int(torch.randint(0, height - self.size + 1, (), generator=generator))
        left = int(torch.randint(0, width - self.size + 1, (), generator=generator))
        image = crop(image, top, left, self.size)
        if self.flip and torch.rand((), generator=generator) < self.flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return normalize(to_tensor(image), self.stats)


@dataclass(frozen=True)
class EvalTransform:
    """Deterministic: CLIP's resize and centre crop (or the squash of
    :class:`TrainTransform`), normalised with ``stats``."""

    size: int = 224
    resize: int = 224
    squash: bool = False
    stats: str = "clip"

    def __call__(
        self, image: Image.Image, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        image = center_crop(resize_for_crop(image, self.resize, self.squash), self.size)
        return normalize(to_tensor(image), self.stats)


class RecordDataset(Dataset):
    """Items: ``{"pixels", "score", "index"}`` plus ``"distortion"`` / ``"scene"`` class
    ids (-1 where unknown) when vocabularies are given.

    Args:
        records: the images.
        transform: ``(PIL image, generator) -> (3, H, W)`` tensor.
        distortions, scenes: class names, index = class id.
        seed: seed of the augmentation.
    """

    def __init__(
        self,
        records: Sequence[Record],
        transform,
        distortions: Sequence[str] = (),
        scenes: Sequence[str] = (),
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.seed = seed
        self.epoch = 0
        self.transform = transform
        self.distortion_ids = {name: i for i, name in enumerate(distortions)}
        self.scene_ids = {name: i for i, name in enumerate(scenes)}

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self, index: int) -> torch.Generator:
        entropy = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(
            2, np.uint64
        )
        return torch.Generator().manual_seed(int(entropy[0] >> np.uint64(1)))

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        item = {
            "pixels": self.transform(load_image(record.path), self._generator(index)),
            "score": torch.tensor(float("nan") if record.score is None else record.score),
            "index": index,
        }
        if self.distortion_ids:
            item["distortion"] = self.distortion_ids.get(record.distortion, -1)
        if self.scene_ids:
            item["scene"] = self.scene_ids.get(record.scene, -1)
        return item


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random`` and numpy from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
