"""The 25 distortion types of KADID-10k (Lin, Hosu & Saupe, QoMEX 2019), 5 levels each,
with numpy, scipy and Pillow.

Each function maps a float RGB image (H, W, 3) in [0, 1] to a distorted one. The
parameters per level follow the KADID-10k generator where it is monotone. Where it is
not, levels were changed so that quality falls with level, which is what meta-prompt
tasks need:
- gaussian blur: KADID's sigmas are (0.1, 0.5, 1, 2, 5), and sigma 0.1 does not change
  8-bit pixels. Ours are (0.5, 1, 2, 3, 5).
- mean shift: KADID's shifts are (0, +0.08, -0.08, +0.15, -0.15). Level 1 leaves the
  image unchanged, and levels 2 and 3 are equally strong. Ours grow in magnitude,
  (0.04, 0.08, 0.12, 0.16, 0.2), and go towards the side with more room (brighter for
  an image whose mean is below 0.5). Otherwise clipping would make a large shift
  towards a saturated side milder than a smaller one.
- contrast change: KADID's (+0.3, +0.15, 0, -0.4, -0.6) S-curve amounts make level 3
  the identity. Ours scale contrast about the image mean by (0.8, 0.65, 0.5, 0.35, 0.2).
- colour saturation 1 (HSV): KADID's factors (0.4, 0.2, 0.1, 0, -0.4) end in two
  identical fully desaturated levels. Ours are (0.7, 0.5, 0.3, 0.15, 0).
- colour saturation 2 (LAB): KADID's level 1 is the identity (factor 1). Ours are
  (1.5, 2, 3, 6, 9).
- colour diffusion: the chroma channels are blurred with sigma = 1.5 * amount + 2 and
  amplified by (1 + amount / 10). This is our reading of KADID's description.
- quantization: KADID thresholds each channel with multi-level Otsu. Ours uses
  equal-width bins over each channel's range, each mapped to its mean. Quantile
  thresholds collapse on flat images, and then fewer levels could give more error.
- denoise: Gaussian noise, then a 5x5 Wiener filter. KADID does not document which
  denoiser it used.
- the sizes in pixels of colour shifts, non-eccentricity patches and colour blocks scale with the
  image's shorter side; KADID's values hold for its 384-pixel shorter side.

Randomness (noise fields, patch positions, the motion direction) is drawn from a
generator seeded by (seed, type) only. Every level of one image therefore shares it,
and a stronger level adds to a weaker one instead of redrawing it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from mpiqa.data.distortions.color import (
    hsv_to_rgb,
    lab_to_rgb,
    rgb_to_hsv,
    rgb_to_lab,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)

Array = np.ndarray
DistortFn = Callable[[Array, float, np.random.Generator], Array]


@dataclass(frozen=True)
class DistortionType:
    index: int  # KADID-10k's number, 1..25
    name: str
    group: str
    levels: tuple[float, ...]
    fn: DistortFn


def _blur(x: Array, kernel: Array) -> Array:
    return np.stack(
        [ndimage.convolve(x[..., c], kernel, mode="nearest") for c in range(3)], axis=-1
    )


def _to_uint8_image(x: Array) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(x * 255), 0, 255).astype(np.uint8))


def _from_image(image: Image.Image) -> Array:
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def _curve(x: Array, middle: float) -> Array:
    """KADID's tone curve: the quadratic through (0, 0), (0.5, middle), (1, 1)."""
    a = 2 - 4 * middle
    return np.clip(a * x * x + (1 - a) * x, 0, 1)


def _scale(x: Array, base: int) -> int:
    """A size in pixels defined for KADID's 384-pixel shorter side, for this image."""
    return max(2, round(base * min(x.shape[:2]) / 384))


# --- blurs --------------------------------------------------------------------------


def gaussian_blur(x: Array, sigma: float, rng: np.random.Generator) -> Array:
    return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest")


def lens_blur(x: Array, radius: float, rng: np.random.Generator) -> Array:
    r = int(np.ceil(radius))
    # disk kernel with anti-aliased edge: coverage by 8x8 supersampling of each pixel
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    grid = np.arange(-r, r + 1)
    yy = (grid[:, None, None, None] + sub[None, None, :, None]) ** 2
    xx = (grid[None, :, None, None] + sub[None, None, None, :]) ** 2
    kernel = (yy + xx <= radius**2).mean(axis=(2, 3))
    return _blur(x, kernel / kernel.sum())


def motion_blur(x: Array, radius: float, rng: np.random.Generator) -> Array:
    angle = rng.uniform(0, np.pi)
    size = 2 * int(np.ceil(radius)) + 1
    kernel = np.zeros((size, size))
    centre = size // 2
    for t in np.linspace(-radius, radius, 8 * size):
        row, col = centre - t * np.sin(angle), centre + t * np.cos(angle)
        kernel[int(round(row)), int(round(col))] += 1
    return _blur(x, kernel / kernel.sum())


# --- colour distortions -------------------------------------------------------------


def color_diffusion(x: Array, amount: float, rng: np.random.Generator) -> Array:
    lab = rgb_to_lab(x)
    sigma = 1.5 * amount + 2
    for c in (1, 2):
        lab[..., c] = ndimage.gaussian_filter(lab[..., c], sigma, mode="nearest") * (
            1 + amount / 10
        )
    return lab_to_rgb(lab)


def color_shift(x: Array, amount: float, rng: np.random.Generator) -> Array:
    direction = rng.normal(size=2)
    pixels = amount * min(x.shape[:2]) / 384
    dy, dx = direction / np.linalg.norm(direction) * pixels  # sub-pixel: small images keep 5 levels
    grey = x.mean(axis=-1)
    edges = np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1))
    edges = ndimage.gaussian_filter(edges, 4)
    low, high = np.percentile(edges, [1, 99])
    weight = np.clip((edges - low) / max(high - low, 1e-12), 0, 1)
    shifted = ndimage.shift(x[..., 1], (dy, dx), order=1, mode="nearest")
    out = x.copy()
    out[..., 1] = shifted * weight + x[..., 1] * (1 - weight)
    return out


def color_quantization(x: Array, colors: float, rng: np.random.Generator) -> Array:
    image = _to_uint8_image(x).quantize(colors=int(colors), dither=Image.Dither.FLOYDSTEINBERG)
    return _from_image(image)


def color_saturation_hsv(x: Array, factor: float, rng: np.random.Generator) -> Array:
    hsv = rgb_to_hsv(x)
    hsv[..., 1] *= factor
    return hsv_to_rgb(hsv)


def color_saturation_lab(x: Array, factor: float, rng: np.random.Generator) -> Array:
    lab = rgb_to_lab(x)
    lab[..., 1:] *= factor
    return lab_to_rgb(lab)


# --- compression --------------------------------------------------------------------


def jpeg2000(x: Array, ratio: float, rng: np.random.Generator) -> Array:
    buffer = io.BytesIO()
    _to_uint8_image(x).save(buffer, format="JPEG2000", quality_mode="rates", quality_layers=[ratio])
    return _from_image(Image.open(io.BytesIO(buffer.getvalue())))


def jpeg(x: Array, quality: float, rng: np.random.Generator) -> Array:
    buffer = io.BytesIO()
    _to_uint8_image(x).save(buffer, format="JPEG", quality=int(quality))
    return _from_image(Image.open(io.BytesIO(buffer.getvalue())))


# --- noise --------------------------------------------------------------------------


def white_noise(x: Array, var: float, rng: np.random.Generator) -> Array:
    return np.clip(x + rng.standard_normal(x.shape) * np.sqrt(var), 0, 1)


def white_noise_color(x: Array, var: float, rng: np.random.Generator) -> Array:
    ycc = rgb_to_ycbcr(x) + rng.standard_normal(x.shape) * np.sqrt(var)
    return np.clip(ycbcr_to_rgb(ycc), 0, 1)


def impulse_noise(x: Array, density: float, rng: np.random.Generator) -> Array:
    hit, salt = rng.random(x.shape), rng.random(x.shape)
    out = x.copy()
    corrupted = hit < density
    out[corrupted] = (salt[corrupted] < 0.5).astype(x.dtype)
    return out


def multiplicative_noise(x: Array, var: float, rng: np.random.Generator) -> Array:
    return np.clip(x + x * rng.standard_normal(x.shape) * np.sqrt(var), 0, 1)


def denoise(x: Array, var: float, rng: np.random.Generator) -> Array:
    from scipy import signal  # here: half a second to import, for this one filter

    noisy = np.clip(x + rng.standard_normal(x.shape) * np.sqrt(var), 0, 1)
    return np.clip(
        np.stack([signal.wiener(noisy[..., c], 5, var) for c in range(3)], axis=-1), 0, 1
    )


# --- brightness ---------------------------------------------------------------------


def brighten(x: Array, amount: float, rng: np.random.Generator) -> Array:
    lab = rgb_to_lab(x)
    lab[..., 0] = _curve(lab[..., 0] / 100, 0.5 + amount / 2) * 100
    return (2 * _curve(x, 0.5 + amount / 2) + lab_to_rgb(lab)) / 3


def darken(x: Array, amount: float, rng: np.random.Generator) -> Array:
    return _curve(x, 0.5 - amount / 2)


def mean_shift(x: Array, shift: float, rng: np.random.Generator) -> Array:
    # towards the side with more room, so clipping never makes a stronger level milder
    direction = 1.0 if x.mean() < 0.5 else -1.0
    return np.clip(x + direction * shift, 0, 1)


# --- spatial distortions ------------------------------------------------------------


def jitter(x: Array, amount: float, rng: np.random.Generator) -> Array:
    height, width = x.shape[:2]
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    out = x
    for _ in range(5):  # KADID scatters the pixels five times
        dy, dx = rng.standard_normal((2, height, width)) * amount
        coords = [rows + dy, cols + dx]
        out = np.stack(
            [
                ndimage.map_coordinates(out[..., c], coords, order=1, mode="nearest")
                for c in range(3)
            ],
            axis=-1,
        )
    return out


def non_eccentricity_patch(x: Array, count: float, rng: np.random.Generator) -> Array:
    size = _scale(x, 16)
    height, width = x.shape[:2]
    out = x.copy()
    # draw the positions for the strongest level; weaker levels use a prefix of them
    plan = rng.random((100, 4))
    for fy, fx, oy, ox in plan[: int(count)]:
        top = size + int(fy * max(1, height - 3 * size))
        left = size + int(fx * max(1, width - 3 * size))
        dst_top = int(np.clip(top + (oy - 0.5) * 2 * size, 0, height - size))
        dst_left = int(np.clip(left + (ox - 0.5) * 2 * size, 0, width - size))
        out[dst_top : dst_top + size, dst_left : dst_left + size] = x[
            top : top + size, left : left + size
        ]
    return out


def pixelate(x: Array, strength: float, rng: np.random.Generator) -> Array:
    factor = 0.95 - strength**0.6
    height, width = x.shape[:2]
    small = _to_uint8_image(x).resize(
        (max(1, int(width * factor)), max(1, int(height * factor))), Image.NEAREST
    )
    return _from_image(small.resize((width, height), Image.NEAREST))


def quantization(x: Array, levels: float, rng: np.random.Generator) -> Array:
    out = np.empty_like(x)
    for c in range(3):
        channel = x[..., c]
        edges = np.linspace(channel.min(), channel.max(), int(levels) + 1)[1:-1]
        bins = np.digitize(channel, edges)
        sums = np.bincount(bins.ravel(), weights=channel.ravel(), minlength=int(levels))
        counts = np.bincount(bins.ravel(), minlength=int(levels))
        out[..., c] = (sums / np.maximum(counts, 1))[bins]
    return out


def color_block(x: Array, count: float, rng: np.random.Generator) -> Array:
    size = _scale(x, 32)
    height, width = x.shape[:2]
    out = x.copy()
    plan = rng.random((10, 5))
    for fy, fx, r, g, b in plan[: int(count)]:
        top, left = int(fy * max(1, height - size)), int(fx * max(1, width - size))
        out[top : top + size, left : left + size] = (r, g, b)
    return out


# --- sharpness and contrast ---------------------------------------------------------


def high_sharpen(x: Array, amount: float, rng: np.random.Generator) -> Array:
    lab = rgb_to_lab(x)
    lightness = lab[..., 0]
    blurred = ndimage.gaussian_filter(lightness, 3, mode="nearest")
    lab[..., 0] = np.clip(lightness + amount * (lightness - blurred), 0, 100)
    return lab_to_rgb(lab)


def contrast_change(x: Array, factor: float, rng: np.random.Generator) -> Array:
    mean = x.mean(axis=(0, 1), keepdims=True)
    return np.clip(mean + (x - mean) * factor, 0, 1)


DISTORTIONS: tuple[DistortionType, ...] = (
    DistortionType(1, "gaussian_blur", "blur", (0.5, 1, 2, 3, 5), gaussian_blur),
    DistortionType(2, "lens_blur", "blur", (1, 2, 4, 6, 8), lens_blur),
    DistortionType(3, "motion_blur", "blur", (1, 2, 4, 6, 10), motion_blur),
    DistortionType(4, "color_diffusion", "color", (1, 3, 6, 8, 12), color_diffusion),
    DistortionType(5, "color_shift", "color", (1, 3, 6, 8, 12), color_shift),
    DistortionType(6, "color_quantization", "color", (64, 48, 32, 16, 8), color_quantization),
    DistortionType(
        7, "color_saturation_1", "color", (0.7, 0.5, 0.3, 0.15, 0.0), color_saturation_hsv
    ),
    DistortionType(8, "color_saturation_2", "color", (1.5, 2, 3, 6, 9), color_saturation_lab),
    DistortionType(9, "jpeg2000", "compression", (16, 32, 45, 120, 170), jpeg2000),
    DistortionType(10, "jpeg", "compression", (43, 12, 7, 4, 0), jpeg),
    DistortionType(11, "white_noise", "noise", (0.001, 0.002, 0.003, 0.005, 0.01), white_noise),
    DistortionType(
        12, "white_noise_color", "noise", (0.0001, 0.0005, 0.001, 0.002, 0.003), white_noise_color
    ),
    DistortionType(13, "impulse_noise", "noise", (0.001, 0.005, 0.01, 0.02, 0.03), impulse_noise),
    DistortionType(
        14, "multiplicative_noise", "noise", (0.001, 0.005, 0.01, 0.02, 0.05), multiplicative_noise
    ),
    DistortionType(15, "denoise", "noise", (0.001, 0.002, 0.003, 0.005, 0.01), denoise),
    DistortionType(16, "brighten", "brightness", (0.1, 0.2, 0.4, 0.7, 1.1), brighten),
    DistortionType(17, "darken", "brightness", (0.05, 0.1, 0.2, 0.4, 0.8), darken),
    DistortionType(18, "mean_shift", "brightness", (0.04, 0.08, 0.12, 0.16, 0.2), mean_shift),
    DistortionType(19, "jitter", "spatial", (0.05, 0.1, 0.2, 0.5, 1.0), jitter),
    DistortionType(
        20, "non_eccentricity_patch", "spatial", (20, 40, 60, 80, 100), non_eccentricity_patch
    ),
    DistortionType(21, "pixelate", "spatial", (0.01, 0.05, 0.1, 0.2, 0.5), pixelate),
    DistortionType(22, "quantization", "spatial", (20, 16, 13, 10, 7), quantization),
    DistortionType(23, "color_block", "spatial", (2, 4, 6, 8, 10), color_block),
    DistortionType(24, "high_sharpen", "sharpness", (1, 2, 3, 6, 12), high_sharpen),
    DistortionType(25, "contrast_change", "contrast", (0.8, 0.65, 0.5, 0.35, 0.2), contrast_change),
)
DISTORTION_NAMES: tuple[str, ...] = tuple(d.name for d in DISTORTIONS)
_BY_NAME = {d.name: d for d in DISTORTIONS}
N_LEVELS = 5


def get_distortion(name: str) -> DistortionType:
    """Raises KeyError listing the known names."""
    if name not in _BY_NAME:
        raise KeyError(f"unknown distortion {name!r}; known: {', '.join(DISTORTION_NAMES)}")
    return _BY_NAME[name]


def distort(image: Array | Image.Image, name: str, level: int, seed: int = 0) -> Array:
    """Apply distortion ``name`` at ``level`` (1 = mildest .. 5) to an RGB image.

    Args:
        image: PIL image, uint8 array (H, W, 3), or float array in [0, 1].
        name: one of :data:`DISTORTION_NAMES`.
        level: 1..5.
        seed: with (name), fixes every random choice; the same for all levels.

    Returns:
        float64 array (H, W, 3) in [0, 1].

    Raises:
        KeyError: unknown name. ValueError: level outside 1..5 or not an RGB image.
    """
    kind = get_distortion(name)
    if not 1 <= level <= N_LEVELS:
        raise ValueError(f"level must be in 1..{N_LEVELS}, got {level}")
    if isinstance(image, Image.Image):
        x = _from_image(image)
    else:
        x = np.asarray(image)
        x = x / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {x.shape}")
    rng = np.random.default_rng([seed, kind.index])
    return np.clip(kind.fn(x, kind.levels[level - 1], rng), 0.0, 1.0)
