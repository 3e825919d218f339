"""The torch dataset: items, seeded augmentation, reproducible across worker counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mpiqa.data.loading import EvalTransform, RecordDataset, TrainTransform, seed_worker
from mpiqa.data.records import Record


def _records(tmp_path, n=6):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
        out.append(Record(path.name, path, float(i), i / n, distortion="blur" if i % 2 else None))
    return out


def _epoch(dataset, workers, seed):
    loader = DataLoader(
        dataset, batch_size=3, shuffle=True, num_workers=workers, worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    return torch.cat([b["pixels"] for b in loader]), torch.cat([b["index"] for b in loader])


def test_items(tmp_path):
    data = RecordDataset(
        _records(tmp_path), EvalTransform(size=32, resize=32), distortions=["blur"]
    )
    item = data[1]
    assert item["pixels"].shape == (3, 32, 32) and item["score"].item() == pytest.approx(1 / 6)
    assert item["distortion"] == 0 and data[0]["distortion"] == -1


def test_augmentation_is_the_same_for_any_worker_count(tmp_path):
    data = RecordDataset(_records(tmp_path), TrainTransform(size=24, resize=32), seed=3)
    a_pixels, a_order = _epoch(data, 0, seed=7)
    b_pixels, b_order = _epoch(data, 0, seed=7)
    assert torch.equal(a_pixels, b_pixels) and torch.equal(a_order, b_order)
    w_pixels, w_order = _epoch(data, 2, seed=7)
    assert torch.equal(w_pixels, a_pixels) and torch.equal(w_order, a_order)
    data.set_epoch(1)
    e_pixels, e_order = _epoch(data, 0, seed=7)
    assert torch.equal(e_order, a_order) and not torch.equal(e_pixels, a_pixels)
    other = RecordDataset(data.records, data.transform, seed=4)
    assert not torch.equal(_epoch(other, 0, seed=7)[0], a_pixels)


def test_eval_transform_is_deterministic(tmp_path):
    data = RecordDataset(_records(tmp_path), EvalTransform(size=32, resize=32))
    assert torch.equal(data[2]["pixels"], data[2]["pixels"])
