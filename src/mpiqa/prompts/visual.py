"""Deep visual prompts (VPT-deep, Jia et al. 2022) for the CLIP image tower.

Learnable tokens go right after the class token before block 0; before each block
1..depth-1 the prompt tokens coming out of the previous block are replaced by that
block's own prompts; deeper blocks carry them along unchanged. The backbone itself is
untouched: everything happens in a ``block_hook``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mpiqa.backbones.layers import BlockHook


class VisualPromptLearner(nn.Module):
    """Args:
    width: the image tower's width.
    n_tokens: prompt tokens per block.
    depth: number of blocks that get their own prompts (1 = VPT-shallow).
    patch_size: for VPT's uniform initialisation range.
    projection: pass every prompt through one shared Linear(width, width) first (as
        GRMP-IQA's published code does).
    dropout: dropout on the (projected) prompts while training (GRMP-IQA's code: 0.1).
    """

    def __init__(
        self,
        width: int,
        n_tokens: int = 8,
        depth: int = 12,
        patch_size: int = 16,
        projection: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if n_tokens < 1 or depth < 1:
            raise ValueError(f"n_tokens and depth must be >= 1, got {n_tokens}, {depth}")
        bound = math.sqrt(6.0 / (3 * patch_size**2 + width))  # VPT's Xavier-style range
        self.prompts = nn.Parameter(torch.empty(depth, n_tokens, width).uniform_(-bound, bound))
        self.projection = nn.Linear(width, width) if projection else None
        self.dropout = nn.Dropout(dropout) if dropout else None
        self.n_tokens = n_tokens
        self.depth = depth

    def tokens(self, external: torch.Tensor | None = None) -> torch.Tensor:
        """(depth, n_tokens, width) prompts; ``external`` replaces the learned ones (used by
        text-to-visual coupling)."""
        prompts = self.prompts if external is None else external
        if self.projection is not None:
            prompts = self.projection(prompts)
        return self.dropout(prompts) if self.dropout is not None else prompts

    def hook(self, external: torch.Tensor | None = None) -> BlockHook:
        prompts = self.tokens(external)
        n = self.n_tokens

        def insert(index: int, x: torch.Tensor) -> torch.Tensor:
            if index >= self.depth:
                return x
            block_prompts = prompts[index].to(x.dtype).expand(x.shape[0], -1, -1)
            rest = x[:, 1:] if index == 0 else x[:, 1 + n :]
            return torch.cat([x[:, :1], block_prompts, rest], dim=1)

        return insert


class TextToVisualCoupling(nn.Module):
    """MaPLe-style coupling: each block's visual prompts are a linear map of the text
    context vectors, so both modalities adapt together. Simplified from MaPLe: the text
    side is the shallow CoOp context (MaPLe also prompts deeper text layers)."""

    def __init__(self, text_width: int, vision_width: int, depth: int) -> None:
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(text_width, vision_width) for _ in range(depth))

    def forward(self, text_ctx: torch.Tensor) -> torch.Tensor:
        """(n_ctx, text_width) -> (depth, n_ctx, vision_width)."""
        return torch.stack([m(text_ctx) for m in self.maps])
