"""resize_uint8_exact: torch's CPU 8-bit antialiased bicubic resize, value for value, from
ops an exporter has (gathers, products, sums)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mpiqa.models.resize import resize_uint8_exact, uint8_taps


def _images(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Noise, and a ramp with mild noise (smooth content rounds closest to half levels)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, shape, generator=g)
    ramp = torch.linspace(0, 255, shape[-1]).expand(shape) * 0.8
    smooth = ramp + torch.randint(0, 50, shape, generator=g)
    return torch.cat([noise, smooth.clamp(0, 255).round()]).to(torch.uint8)


@pytest.mark.parametrize(
    "size, out",
    [
        ((512, 512), (384, 384)),  # the default model's view
        ((500, 500), (384, 384)),
        ((300, 451), (384, 384)),  # up in one axis, down in the other
        ((40, 30), (17, 23)),
        ((64, 64), (128, 96)),
        ((33, 7), (33, 20)),  # one axis left alone
        ((6, 2000), (6, 384)),  # its bound on the sums passes 2^24: summed in float64
    ],
)
def test_it_gives_torchs_8bit_resize_value_for_value(size, out):
    pixels = _images((1, 3, *size), seed=sum(size))
    expected = F.interpolate(
        pixels.contiguous(memory_format=torch.channels_last), size=out, mode="bicubic",
        antialias=True,
    )  # fmt: skip
    got = resize_uint8_exact(pixels.float(), out)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert torch.equal(got, expected.float())


def test_the_weights_are_integers_at_one_precision_per_axis():
    starts, weights, precision = uint8_taps(512, 384)
    assert len(starts) == len(weights) == 384 and precision == 15
    # at most 2 x ceil(support 2 x 4/3) + 1 samples each, all inside the image
    assert max(len(row) for row in weights) <= 7
    assert all(0 <= s and s + len(row) <= 512 for s, row in zip(starts, weights, strict=True))
    # each output's weights sum to one at that precision, to within the rounding of each
    assert all(abs(sum(row) - (1 << precision)) <= len(row) for row in weights)
