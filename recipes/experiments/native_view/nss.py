"""Natural-scene statistics of the whole 512 x 512 input: a candidate third block of
features for the probe, read at native resolution over the whole image (the stem's
views see it resized to 384 or its middle fifth only).

BRISQUE's ingredients (Mittal et al., IEEE TIP 2012): the luminance's mean-subtracted,
contrast-normalised (MSCN) coefficients, Gaussian window 7 x 7 with sigma 7/6, and their
products with the four neighbours (horizontal, vertical, both diagonals), at the input's
scale and at half of it. Where BRISQUE fits a generalised Gaussian to each and keeps
its shape and spread, this keeps moments a linear probe can use directly (no fit, no
lookup table): the MSCN's variance, E|x| / sqrt(E x^2) (a monotone function of the
GGD's shape) and kurtosis; each product's mean and the spread of its negative and
positive parts (an asymmetric GGD's left and right deviations) and kurtosis; plus the
local deviation map's mean and coefficient of variation (contrast, and how unevenly
it is spread: blur flattens it). 21 numbers per scale, 42 in all."""

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)


def _gaussian(sigma: float = 7 / 6, size: int = 7) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).view(1, 1, 1, size)


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    pad = g.shape[-1] // 2
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="replicate"), g)
    return F.conv2d(F.pad(x, (0, 0, pad, pad), mode="replicate"), g.transpose(-1, -2))


def _scale(y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(B, 21) statistics of one scale of (B, 1, H, W) luminance in [0, 255]."""
    mu = _blur(y, g)
    sigma = (_blur(y * y, g) - mu * mu).clamp_min(0).sqrt()
    m = (y - mu) / (sigma + 1)
    flat = m.flatten(1)
    var = flat.square().mean(1)
    shape = flat.abs().mean(1) / var.clamp_min(1e-12).sqrt()
    kurt = flat.pow(4).mean(1) / var.clamp_min(1e-12).square()
    out = [var, shape, kurt]
    pairs = (
        m[..., :, :-1] * m[..., :, 1:],
        m[..., :-1, :] * m[..., 1:, :],
        m[..., :-1, :-1] * m[..., 1:, 1:],
        m[..., 1:, :-1] * m[..., :-1, 1:],
    )
    for p in pairs:
        p = p.flatten(1)
        second = p.square().mean(1)
        left = (p.clamp_max(0).square().sum(1) / (p < 0).sum(1).clamp_min(1)).sqrt()
        right = (p.clamp_min(0).square().sum(1) / (p > 0).sum(1).clamp_min(1)).sqrt()
        out += [p.mean(1), left, right, p.pow(4).mean(1) / second.clamp_min(1e-12).square()]
    s = sigma.flatten(1)
    out += [s.mean(1), s.std(1) / s.mean(1).clamp_min(1e-6)]
    return torch.stack(out, 1)


@torch.no_grad()
def nss(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, 42) float64 statistics of (B, 3, H, W) model-normalised pixels (``mean``,
    ``std``: the normalisation's per-channel constants, as in ``STATS``)."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    rgb = (pixels.float() * s + m).clamp(0, 1) * 255
    y = (rgb * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    g = _gaussian()
    half = F.avg_pool2d(y, 2)
    return torch.cat([_scale(y, g), _scale(half, g)], 1).double()
