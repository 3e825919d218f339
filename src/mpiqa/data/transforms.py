"""CLIP's image preprocessing, written with Pillow and torch.

torchvision cannot be installed beside our CPU build of torch, so this re-implements the
reference pipeline ``Resize(n, BICUBIC) -> CenterCrop(n) -> ToTensor -> Normalize``:
for PIL input it makes the same Pillow calls with the same rounding, so it gives the
same pixels. One difference: we convert to RGB *before* resizing, where the reference
resizes palette images with Pillow's nearest-neighbour fallback.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# ImageNet's statistics: what GRMP-IQA's code normalises with, even for CLIP weights
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STATS = {"clip": (CLIP_MEAN, CLIP_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}

CropMode = Literal["center", "multi", "full"]
CROP_MODES: tuple[str, ...] = ("center", "multi", "full")


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Bicubic resize so the shorter side is ``size`` (torchvision's size rounding)."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if width <= height else (new_long, size)
    if (new_w, new_h) == (width, height):
        return image
    return image.resize((new_w, new_h), Image.BICUBIC)


def crop(image: Image.Image, top: int, left: int, size: int) -> Image.Image:
    return image.crop((left, top, left + size, top + size))


def center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    return crop(image, int(round((height - size) / 2.0)), int(round((width - size) / 2.0)), size)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32 in [0, 1]."""
    return to_uint8(image).float().div_(255.0)


def to_uint8(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) uint8, as decoded (a quarter of float32's bytes to move
    between processes and to a GPU; :func:`normalize_uint8` finishes it there)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def normalize_uint8(pixels: torch.Tensor, stats: str = "clip") -> torch.Tensor:
    """(..., 3, H, W) uint8 -> normalised float32: the same arithmetic as
    :func:`to_tensor` then :func:`normalize`, so the same numbers, wherever it runs."""
    return normalize(pixels.float().div_(255.0), stats)


def normalize(pixels: torch.Tensor, stats: str = "clip") -> torch.Tensor:
    """Subtract the mean and divide by the std, channel-wise, over (..., 3, H, W):
    CLIP's statistics, or ImageNet's (``stats="imagenet"``)."""
    if stats not in STATS:
        raise ValueError(f"stats must be one of {sorted(STATS)}, got {stats!r}")
    mean_, std_ = STATS[stats]
    mean = torch.tensor(mean_, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(std_, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    return (pixels - mean) / std


# Centre and multi crops never see beyond this aspect ratio, so an image of extreme shape
# (3 x 100,000 pixels) is cut to its centre before resizing instead of being resized to
# 224 x 7.5 M pixels first. Ordinary photos (up to 4:1) are untouched.
MAX_ASPECT = 4


def cap_aspect(image: Image.Image, ratio: int = MAX_ASPECT) -> Image.Image:
    """The centre of ``image`` with its longer side cut to ``ratio`` x its shorter side
    (the image itself when it is within that ratio)."""
    width, height = image.size
    short = min(width, height)
    if max(width, height) <= ratio * short:
        return image
    if width > height:
        left = (width - ratio * short) // 2
        return image.crop((left, 0, left + ratio * short, height))
    top = (height - ratio * short) // 2
    return image.crop((0, top, width, top + ratio * short))


def resize_for_crop(image: Image.Image, resize: int, squash: bool = False) -> Image.Image:
    """The resize before a crop: shorter side to ``resize`` (CLIP), or the whole image
    squashed to ``resize`` x ``resize`` (GRMP-IQA's code), bicubic."""
    if squash:
        return (
            image
            if image.size == (resize, resize)
            else image.resize((resize, resize), Image.BICUBIC)
        )
    return resize_shorter_side(image, resize)


def crop_boxes(height: int, width: int, size: int, n_crops: int) -> list[tuple[int, int]]:
    """(top, left) of ``n_crops`` size x size crops spread over the image: the centre and
    the four corners for up to 5 crops, an even grid over the image for more."""
    centre = (int(round((height - size) / 2.0)), int(round((width - size) / 2.0)))
    if n_crops <= 5:
        corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size)]
        return [centre, *corners][:n_crops]
    side = int(np.ceil(np.sqrt(n_crops)))
    tops = np.linspace(0, height - size, side).round().astype(int)
    lefts = np.linspace(0, width - size, side).round().astype(int)
    grid = [(int(t), int(lf)) for t in tops for lf in lefts]
    return [grid[i] for i in np.linspace(0, len(grid) - 1, n_crops).round().astype(int)]


def preprocess_pil(
    image: Image.Image,
    size: int,
    mode: CropMode = "center",
    n_crops: int = 5,
    patch_size: int = 1,
    max_side: int = 1024,
    resize: int | None = None,
    squash: bool = False,
    stats: str = "clip",
    uint8: bool = False,
) -> torch.Tensor:
    """RGB image -> (K, 3, H, W) normalised crops (``stats``: CLIP's or ImageNet's), or
    with ``uint8`` the crops' pixels as they are, for :func:`normalize_uint8` later.

    Modes:
        center: shorter side resized to ``resize`` (default ``size``), or the image
            squashed to ``resize`` x ``resize`` when ``squash``; one centre crop of
            ``size`` (CLIP's pipeline with the defaults), K = 1.
        multi: ``n_crops`` crops of ``size`` at native resolution (the shorter side is only
            upscaled to ``size`` when smaller), so resizing does not hide fine distortions.
        full: the whole image at native resolution (downscaled when the longer side is over
            ``max_side``), cut to a multiple of ``patch_size``; K = 1.
    """

    def finish(crops: list[Image.Image]) -> torch.Tensor:
        if stats not in STATS:
            raise ValueError(f"stats must be one of {sorted(STATS)}, got {stats!r}")
        pixels = torch.stack([to_uint8(c) for c in crops])
        return pixels if uint8 else normalize_uint8(pixels, stats)

    if mode == "center":
        image = resize_for_crop(image if squash else cap_aspect(image), resize or size, squash)
        return finish([center_crop(image, size)])
    if mode == "multi":
        if min(image.size) < size:
            image = resize_shorter_side(cap_aspect(image), size)
        width, height = image.size
        return finish(
            [crop(image, t, lf, size) for t, lf in crop_boxes(height, width, size, n_crops)]
        )
    if mode == "full":
        width, height = image.size
        if max(width, height) > max_side:
            scale = max_side / max(width, height)
            image = image.resize(
                (max(1, round(width * scale)), max(1, round(height * scale))), Image.BICUBIC
            )
        if min(image.size) < patch_size:
            image = resize_shorter_side(image, patch_size)
        width, height = image.size
        return finish(
            [image.crop((0, 0, width - width % patch_size, height - height % patch_size))]
        )
    raise ValueError(f"crop mode must be one of {CROP_MODES}, got {mode!r}")


def preprocess_tensor(
    pixels: torch.Tensor,
    size: int,
    mode: CropMode = "center",
    n_crops: int = 5,
    patch_size: int = 1,
    max_side: int = 1024,
    resize: int | None = None,
    squash: bool = False,
    stats: str = "clip",
) -> torch.Tensor:
    """(3, H, W) float image in [0, 1] -> (K, 3, H', W') normalised crops, as
    :func:`preprocess_pil` but resizing with torch's antialiased bicubic."""
    resize_to = resize

    def resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        out = F.interpolate(
            x[None], size=(h, w), mode="bicubic", antialias=True, align_corners=False
        )
        return out[0].clamp_(0.0, 1.0)

    def shorter_to(x: torch.Tensor, target: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h <= w:
            return resize(x, target, int(target * w / h)) if h != target else x
        return resize(x, int(target * h / w), target) if w != target else x

    _, height, width = pixels.shape
    if (
        mode in ("center", "multi")
        and not squash
        and max(height, width) > MAX_ASPECT * min(height, width)
    ):
        short = min(height, width)
        top = (height - min(height, MAX_ASPECT * short)) // 2
        left = (width - min(width, MAX_ASPECT * short)) // 2
        pixels = pixels[:, top : top + MAX_ASPECT * short, left : left + MAX_ASPECT * short]
        _, height, width = pixels.shape
    if mode == "center":
        target = resize_to or size
        if squash:
            x = pixels if (height, width) == (target, target) else resize(pixels, target, target)
        else:
            x = shorter_to(pixels, target)
        h, w = x.shape[-2:]
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
        return normalize(x[:, top : top + size, left : left + size], stats)[None]
    if mode == "multi":
        x = shorter_to(pixels, size) if min(height, width) < size else pixels
        h, w = x.shape[-2:]
        crops = [x[:, t : t + size, lf : lf + size] for t, lf in crop_boxes(h, w, size, n_crops)]
        return normalize(torch.stack(crops), stats)
    if mode == "full":
        x = pixels
        if max(height, width) > max_side:
            scale = max_side / max(height, width)
            x = resize(x, max(1, round(height * scale)), max(1, round(width * scale)))
        if min(x.shape[-2:]) < patch_size:
            x = shorter_to(x, patch_size)
        h, w = x.shape[-2:]
        return normalize(x[:, : h - h % patch_size, : w - w % patch_size], stats)[None]
    raise ValueError(f"crop mode must be one of {CROP_MODES}, got {mode!r}")
