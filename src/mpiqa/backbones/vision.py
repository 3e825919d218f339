"""CLIP's Vision Transformer image tower."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mpiqa.backbones.config import Activation, VisionConfig
from mpiqa.backbones.efficientnet import (
    INPUT_MEAN,
    INPUT_STD,
    EfficientNetLite,
    sqrt_nonnegative,
)
from mpiqa.backbones.layers import BlockHook, Transformer, init_transformer_, is_traced
from mpiqa.data.transforms import CLIP_MEAN, CLIP_STD

# A frozen EfficientNet stem on a CPU runs each layer over as many images at a time as
# keep its largest activation under this many bytes: one image at a time through the
# large early maps (at 384 x 384 a stage-2 block expands to 14 MB per image), up to whole
# batches through the small late ones, where each operator's fixed cost (about 0.1 ms
# each, some 70 of them) outweighs its work. On the 2-core development CPU (L2 1 MB per
# core, L3 32 MB), mpiqa-small's stem over 32 images at 384 and their 224 crops took a
# median 22.1 ms per image at 8 MB (6 MB 22.0, 4 MB 22.8, 12 MB 24.0, 32 MB 35.8)
# against 27.0-28.2 ms for the previous fixed chunks of two images; identical outputs.
CPU_STEM_CHUNK_BYTES = 8 << 20


class VisionTransformer(nn.Module):
    """Patch embedding, class token, pre-norm transformer, and a projected class token.

    The forward pass is split into :meth:`embed`, the blocks of :attr:`transformer` and
    :meth:`pool` so that prompt modules (VPT-deep) can insert or replace tokens between
    blocks through a ``block_hook`` without a copy of the model. The class token stays at
    index 0; prompt tokens go after it.
    """

    def __init__(self, config: VisionConfig, output_dim: int, act: Activation) -> None:
        super().__init__()
        self.config = config
        width = config.width
        if config.stem == "patch":
            self.stem = None
            self.conv1 = nn.Conv2d(
                3, width, config.patch_size, stride=config.patch_size, bias=False
            )
        else:
            self.stem = EfficientNetLite(config.stem_stages, frozen_norm=True, variant=config.stem)
            self.conv1 = nn.Conv2d(config.token_channels, width, 1, bias=False)
            if config.global_token:
                self.stats_norm = nn.LayerNorm(config.token_channels)
                self.stats_proj = nn.Linear(config.token_channels, width)
            # CLIP-normalised pixels -> the stem's own normalisation, as one affine map.
            clip_mean, clip_std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
            mean, std = torch.tensor(INPUT_MEAN), torch.tensor(INPUT_STD)
            self.register_buffer("stem_scale", (clip_std / std).view(3, 1, 1), persistent=False)
            self.register_buffer(
                "stem_shift", ((clip_mean - mean) / std).view(3, 1, 1), persistent=False
            )
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn(config.grid_size**2 + 1, width)
        )
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(
            width, config.layers, config.heads, config.mlp_ratio, act, causal=False
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        init_transformer_(self.transformer)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def positional_embedding_for(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Positional embedding for a grid of patches, bicubically resized if it differs
        from the trained grid (full-resolution scoring)."""
        pos = self.positional_embedding
        side = self.config.grid_size
        if (grid_h, grid_w) == (side, side):
            return pos
        cls_pos, patch_pos = pos[:1], pos[1:]
        patch_pos = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(
            patch_pos.float(), size=(grid_h, grid_w), mode="bicubic", align_corners=False
        ).to(pos.dtype)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(grid_h * grid_w, -1)
        return torch.cat([cls_pos, patch_pos], dim=0)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised pixels -> (N, 1 + patches, width) tokens after ln_pre."""
        return self.embed_features(self.stem_features(pixels))

    def stem_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The hybrid stem's feature map, or the pixels unchanged for a patch stem. Split
        out so that training with a frozen stem can compute it once per image."""
        pixels = pixels.to(self.conv1.weight.dtype)
        if self.stem is None:
            return pixels
        c = self.config
        pixels = pixels * self.stem_scale + self.stem_shift
        if not c.stem_taps:
            return self.stem(pixels)
        needs_grad = torch.is_grad_enabled() and (
            pixels.requires_grad or any(p.requires_grad for p in self.stem.parameters())
        )
        if pixels.device.type == "cpu" and not needs_grad and not is_traced():
            # A frozen stem on a CPU: each layer over as many images as fit its budget
            # (see CPU_STEM_CHUNK_BYTES), channels-last for oneDNN's convolutions.
            pixels = pixels.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                return self.stem(
                    pixels,
                    c.stem_taps,
                    grid=c.stem_grid,
                    pool=c.stem_pool,
                    chunk_bytes=CPU_STEM_CHUNK_BYTES,
                )
        return self.stem(pixels, c.stem_taps, grid=c.stem_grid, pool=c.stem_pool)

    def global_statistics(self, features: torch.Tensor) -> torch.Tensor:
        """Per-channel mean (and, with ``stem_pool="mean_std"``, standard deviation) over
        the whole image, recovered exactly from the cells' means and deviations (equal
        cells; adaptive pooling's unequal ones make it a close approximation)."""
        if self.config.stem_pool == "mean":
            return features.mean(dim=(2, 3))
        means, stds = features.float().chunk(2, dim=1)
        mean = means.mean(dim=(2, 3))
        second = (stds.square() + means.square()).mean(dim=(2, 3))
        std = sqrt_nonnegative(second - mean.square())
        return torch.cat([mean, std], dim=1).to(features.dtype)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """:meth:`stem_features` output -> (N, 1 + cells, width) tokens after ln_pre."""
        x = self.conv1(features.to(self.conv1.weight.dtype))
        n, width, grid_h, grid_w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(n, 1, width)
        if self.config.global_token:
            stats = self.stats_norm(self.global_statistics(features.to(x.dtype)))
            cls = cls + self.stats_proj(stats).unsqueeze(1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding_for(grid_h, grid_w).to(x.dtype)
        return self.ln_pre(x)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens after the last block -> projected (unnormalised) image embedding."""
        return self.ln_post(tokens[:, 0]) @ self.proj

    def forward(self, pixels: torch.Tensor, block_hook: BlockHook | None = None) -> torch.Tensor:
        return self.pool(self.transformer(self.embed(pixels), block_hook=block_hook, keep=1))
