"""CLIP's ResNet image tower (OpenAI's "ModifiedResNet": RN50, RN101, RN50x4 ...).

Three changes to a torchvision ResNet, as in Radford et al. (2021): a stem of three 3x3
convolutions with an average pool in place of the 7x7 convolution and max pool; strided
blocks that average-pool (anti-aliasing) before a stride-1 convolution, on both the main
and the shortcut path; and an attention pool in place of global average pooling, whose
query is the mean of the last feature map. Parameter names follow OpenAI's, so its
TorchScript archives and open_clip's state dicts load without renaming.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mpiqa.backbones.config import VisionConfig

#: "interpolate": the attention pool's positional embedding, bicubically resized when the
#: feature map is not the trained grid; "drop": none at all (CLIP-IQA's choice, so that
#: images of any size are scored as they are).
Positional = Literal["interpolate", "drop"]
POSITIONAL_MODES: tuple[str, ...] = ("interpolate", "drop")


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> (average pool when strided) -> 1x1 with 4x the planes, plus a
    shortcut that pools and projects when the shape changes."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != out:
            # OpenAI's names: "-1" (the pool, no weights), "0" (conv), "1" (norm)
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride) if stride > 1 else nn.Identity()),
                        ("0", nn.Conv2d(inplanes, out, 1, bias=False)),
                        ("1", nn.BatchNorm2d(out)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.relu3(out + identity)


class AttentionPool(nn.Module):
    """One query (the mean over positions) attends over all positions and itself.

    Args:
        grid: side of the feature map the positional embedding was trained for.
        width: channels of the feature map.
        heads: attention heads.
        output_dim: size of the image embedding.
    """

    def __init__(self, grid: int, width: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) / width**0.5)
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.c_proj = nn.Linear(width, output_dim)

    def positional_embedding_for(self, grid_h: int, grid_w: int) -> torch.Tensor:
        pos = self.positional_embedding
        if (grid_h, grid_w) == (self.grid, self.grid):
            return pos
        cells = pos[1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        cells = F.interpolate(
            cells.float(), size=(grid_h, grid_w), mode="bicubic", align_corners=False
        )
        cells = cells.to(pos.dtype).permute(0, 2, 3, 1).reshape(grid_h * grid_w, -1)
        return torch.cat([pos[:1], cells])

    def forward(self, x: torch.Tensor, positional: Positional = "interpolate") -> torch.Tensor:
        n, width, grid_h, grid_w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        if positional != "drop":
            tokens = tokens + self.positional_embedding_for(grid_h, grid_w).to(tokens.dtype)
        head_dim = width // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:  # (N, L, C) -> (N, heads, L, head_dim)
            return t.reshape(n, t.shape[1], self.heads, head_dim).transpose(1, 2)

        q = split(self.q_proj(tokens[:, :1]))
        out = F.scaled_dot_product_attention(
            q, split(self.k_proj(tokens)), split(self.v_proj(tokens))
        )
        return self.c_proj(out.transpose(1, 2).reshape(n, width))


class ModifiedResNet(nn.Module):
    """CLIP's ResNet image tower: pixels -> projected (unnormalised) image embedding.

    Args:
        config: a vision config with ``resnet_layers`` (see :class:`VisionConfig`).
        output_dim: size of the image embedding.

    Attributes:
        positional: what the attention pool does with its positional embedding
            (:data:`Positional`); CLIP-IQA sets ``"drop"``.
    """

    def __init__(self, config: VisionConfig, output_dim: int) -> None:
        super().__init__()
        if not config.is_resnet:
            raise ValueError("ModifiedResNet needs a vision config with resnet_layers")
        self.config = config
        self.positional: Positional = "interpolate"
        width = config.width
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        for index, blocks in enumerate(config.resnet_layers):
            planes = width * 2**index
            stride = 1 if index == 0 else 2
            stage = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
        self.attnpool = AttentionPool(config.grid_size, width * 32, config.heads, output_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        """OpenAI's initialisation: scaled attention-pool projections, and each block's
        last norm at zero so that a fresh block starts as its shortcut."""
        std = self.attnpool.c_proj.in_features**-0.5
        for proj in (
            self.attnpool.q_proj,
            self.attnpool.k_proj,
            self.attnpool.v_proj,
            self.attnpool.c_proj,
        ):
            nn.init.normal_(proj.weight, std=std)
        for module in self.modules():
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) CLIP-normalised pixels -> the last stage's (N, 32 x width, H/32,
        W/32) feature map (sizes round down; any input size works)."""
        x = pixels.to(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.avgpool(self.relu3(self.bn3(self.conv3(x))))
        for index in range(len(self.config.resnet_layers)):
            x = getattr(self, f"layer{index + 1}")(x)
        return x

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.attnpool(self.features(pixels), self.positional)
