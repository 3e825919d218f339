"""torch's 8-bit antialiased bicubic resize, written with ops every exporter has.

On a CPU, ``F.interpolate(uint8, mode="bicubic", antialias=True)`` resizes in fixed
point, as Pillow does: per axis, double weights rounded to integers at a precision that
the axis's largest weight fixes, an integer dot product per output pixel, rounded and
clamped back to 8 bits, the width first. An exported graph cannot call that kernel, and
ONNX's own 8-bit resize rounds otherwise (scores of the default model moved by up to
0.0064 on photos). :func:`resize_uint8_exact` computes the same integers with two
matrix products, exact in float32 because every partial sum is an integer below 2^24
(checked; float64 otherwise). Its weights follow PyTorch's
``HelperInterpBase::_compute_index_ranges_int16_weights`` and
``_compute_indices_min_size_weights_aa`` (aten/src/ATen/native/cpu/UpSampleKernel.cpp);
tests hold its output equal to torch's kernel, pixel for pixel.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

_A = -0.5  # the bicubic kernel's parameter, as Pillow and torch's antialiased mode use it


def _cubic(x: float) -> float:
    """The bicubic kernel in torch's order of operations (its ``aa_filter``)."""
    x = abs(x)
    if x < 1.0:
        return ((_A + 2.0) * x - (_A + 3.0)) * x * x + 1.0
    if x < 2.0:
        return ((_A * x - 5.0 * _A) * x + 8.0 * _A) * x - 4.0 * _A
    return 0.0


@functools.lru_cache(maxsize=16)
def uint8_taps(
    in_size: int, out_size: int
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...], int]:
    """One axis of the 8-bit resize: (each output's first input sample, its integer
    weights over the samples from there, the precision in bits)."""
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    taps = int(math.ceil(support)) * 2 + 1
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    starts, rows, wt_max = [], [], 0.0
    for i in range(out_size):
        center = scale * (i + 0.5)
        xmin = max(int(center - support + 0.5), 0)  # int(): truncation, as C's cast
        xsize = min(max(min(int(center + support + 0.5), in_size) - xmin, 0), taps)
        weights = [_cubic((j + xmin - center + 0.5) * invscale) for j in range(xsize)]
        total = 0.0
        for w in weights:
            total += w
        if total != 0.0:
            weights = [w / total for w in weights]
            wt_max = max([wt_max, *weights])
        starts.append(xmin)
        rows.append(weights)
    precision = 0
    while precision < 22 and int(0.5 + wt_max * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    unit = float(1 << precision)
    integers = tuple(
        tuple(int(-0.5 + w * unit) if w * unit < 0 else int(0.5 + w * unit) for w in row)
        for row in rows
    )
    return tuple(starts), integers, precision


@functools.lru_cache(maxsize=16)
def uint8_matrix(in_size: int, out_size: int) -> tuple[np.ndarray, int]:
    """:func:`uint8_taps` as an (out, in) float64 matrix of the integer weights, and the
    precision: one axis of the resize is one matrix product."""
    starts, weights, precision = uint8_taps(in_size, out_size)
    matrix = np.zeros((out_size, in_size))
    for i, (start, row) in enumerate(zip(starts, weights, strict=True)):
        matrix[i, start : start + len(row)] = row
    return matrix, precision


def resize_uint8_exact(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) float holding 8-bit values -> (N, C, *size), the values torch's 8-bit
    antialiased bicubic resize gives (width first, each pass rounded and clamped to 8
    bits), in ``pixels``' float dtype.

    Each pass is a product with a matrix of integer weights: every partial sum is an
    integer, so float32 gives it exactly while the sums stay below 2^24 (float64 beyond,
    and on a GPU that lets matrix products round their inputs to TF32)."""
    x = pixels
    for dim, out_size in ((-1, size[1]), (-2, size[0])):
        in_size = int(x.shape[dim])
        if in_size == out_size:
            continue  # torch leaves an axis of the same size alone
        matrix, precision = uint8_matrix(in_size, out_size)
        bound = 255 * float(np.abs(matrix).sum(1).max()) + (1 << precision)
        tf32 = x.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
        dtype = torch.float32 if bound < 2**24 and not tf32 else torch.float64
        weights = torch.from_numpy(matrix).to(device=x.device, dtype=dtype)
        x = x.to(dtype)
        total = x @ weights.T if dim == -1 else weights @ x
        scale = 1.0 / (1 << precision)
        x = torch.floor((total + float(1 << precision >> 1)) * scale).clamp(0, 255)
    return x.to(pixels.dtype)
