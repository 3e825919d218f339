"""Preprocessing: CLIP's resize/crop/normalise, reproduced step by step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mpiqa.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    crop_boxes,
    preprocess_pil,
    preprocess_tensor,
    resize_shorter_side,
)


def _image(w, h, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "w, h, expected",
    [(300, 200, (336, 224)), (200, 300, (224, 336)), (224, 500, (224, 500)), (10, 7, (320, 224))],
)
def test_shorter_side_sizes_follow_torchvision(w, h, expected):
    assert resize_shorter_side(_image(w, h), 224).size == expected


def test_center_pipeline_equals_explicit_pillow_steps():
    image = _image(301, 211)
    out = preprocess_pil(image, 224)
    resized = image.resize((int(224 * 301 / 211), 224), Image.BICUBIC)
    left = int(round((resized.width - 224) / 2.0))
    crop = np.asarray(resized.crop((left, 0, left + 224, 224)), dtype=np.float32) / 255.0
    expected = (crop - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    assert out.shape == (1, 3, 224, 224)
    assert np.abs(out[0].permute(1, 2, 0).numpy() - expected).max() < 1e-5


def test_tensor_path_is_close_to_pil_path():
    image = _image(120, 90, seed=3).resize((120, 90))
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
    a, b = preprocess_pil(image, 64), preprocess_tensor(pixels, 64)
    assert a.shape == b.shape
    # different bicubic kernels (Pillow vs torch): close, not equal
    assert (a - b).abs().mean() < 0.1


def test_multi_crops_are_native_resolution_and_distinct():
    image = _image(100, 80)
    crops = preprocess_pil(image, 32, mode="multi", n_crops=9)
    assert crops.shape == (9, 3, 32, 32)
    boxes = crop_boxes(80, 100, 32, 9)
    assert len(set(boxes)) == 9
    assert all(0 <= t <= 48 and 0 <= lf <= 68 for t, lf in boxes)
    tensor_crops = preprocess_tensor(torch.rand(3, 80, 100), 32, mode="multi", n_crops=9)
    assert tensor_crops.shape == (9, 3, 32, 32)


def test_full_mode_keeps_aspect_and_patch_multiples():
    out = preprocess_pil(_image(130, 70), 32, mode="full", patch_size=16)
    assert out.shape == (1, 3, 64, 128)
    big = preprocess_pil(_image(3000, 1000), 32, mode="full", patch_size=16, max_side=512)
    assert big.shape[-1] <= 512 and big.shape[-1] % 16 == 0 and big.shape[-2] % 16 == 0


def test_unknown_mode():
    with pytest.raises(ValueError, match="crop mode"):
        preprocess_pil(_image(10, 10), 8, mode="zoom")


def test_extreme_aspect_ratio_is_cut_before_resizing():
    # 3 x 30,000 pixels would be resized to 224 x 2.2 M first; the centre crop only ever
    # keeps the middle, so the image is cut to 4:1 first: same crop, bounded memory.
    from PIL import Image as _Image

    from mpiqa.data.transforms import cap_aspect, preprocess_pil, preprocess_tensor

    rng = np.random.default_rng(0)
    strip = _Image.fromarray(rng.integers(0, 255, (3, 30_000, 3), dtype=np.uint8))
    assert cap_aspect(strip).size == (12, 3)
    assert preprocess_pil(strip, 32).shape == (1, 3, 32, 32)
    pixels = torch.from_numpy(np.asarray(strip).copy()).permute(2, 0, 1).float() / 255
    assert preprocess_tensor(pixels, 32).shape == (1, 3, 32, 32)
    assert preprocess_pil(strip, 32, mode="multi", n_crops=2).shape == (2, 3, 32, 32)
    photo = _Image.fromarray(rng.integers(0, 255, (40, 120, 3), dtype=np.uint8))
    assert cap_aspect(photo) is photo  # 3:1 is left alone


@pytest.mark.parametrize("mode", ["center", "multi", "full"])
def test_uint8_crops_normalise_to_the_same_numbers(mode):
    from mpiqa.data.transforms import normalize_uint8, preprocess_pil

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (90, 130, 3), dtype=np.uint8))
    raw = preprocess_pil(image, 64, mode, n_crops=3, patch_size=16, uint8=True)
    assert raw.dtype == torch.uint8
    for stats in ("clip", "imagenet"):
        expected = preprocess_pil(image, 64, mode, n_crops=3, patch_size=16, stats=stats)
        assert torch.equal(normalize_uint8(raw, stats), expected)
