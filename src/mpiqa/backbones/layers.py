"""Transformer building blocks shared by CLIP's image and text towers.

Parameter names follow OpenAI's CLIP (``attn.in_proj_weight``, ``mlp.c_fc`` ...) so
OpenAI and open_clip checkpoints load without renaming inside a block. Tensors are
batch-first (N, L, D) throughout, and attention runs through
``F.scaled_dot_product_attention`` (fused kernels on CPU and GPU).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mpiqa.backbones.config import Activation

# Called before block i with the tokens entering it; returns the tokens to feed it.
BlockHook = Callable[[int, torch.Tensor], torch.Tensor]


def is_traced() -> bool:
    """Whether the forward runs under TorchScript tracing or torch.compile / export: then
    shape-dependent shortcuts (batch chunks, trimmed sequences) must not be taken, as the
    graph would keep the example's shapes."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that OpenAI's CLIP models were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(act: Activation) -> nn.Module:
    return QuickGELU() if act == "quick_gelu" else nn.GELU()


class Attention(nn.Module):
    """Multi-head self-attention with a packed q/k/v projection."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, causal: bool = False, queries: int | None = None
    ) -> torch.Tensor:
        """(N, L, D) -> (N, L, D); with ``queries``, only the first ``queries`` tokens
        attend (to all L) and only their outputs are returned: (N, queries, D)."""
        n, length, width = x.shape
        head_dim = width // self.heads
        if queries is None:
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
            qkv = qkv.view(n, length, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            if causal:
                raise ValueError("queries is for a non-causal readout")
            q = F.linear(x[:, :queries], self.in_proj_weight[:width], self.in_proj_bias[:width])
            q = q.view(n, queries, self.heads, head_dim).transpose(1, 2)
            kv = F.linear(x, self.in_proj_weight[width:], self.in_proj_bias[width:])
            kv = kv.view(n, length, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
            k, v = kv[0], kv[1]
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(n, q.shape[2], width))


class ResidualBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, act: Activation) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, hidden),
                gelu=make_activation(act),
                c_proj=nn.Linear(hidden, width),
            )
        )

    def forward(
        self, x: torch.Tensor, causal: bool = False, queries: int | None = None
    ) -> torch.Tensor:
        """``queries``: update and return only the first ``queries`` tokens (they still
        attend to all): the last block of a tower read out from its class token."""
        if queries is not None:
            x = x[:, :queries] + self.attn(self.ln_1(x), causal=causal, queries=queries)
        else:
            x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of residual blocks, run one by one so prompt modules can act between them."""

    def __init__(
        self, width: int, layers: int, heads: int, mlp_ratio: float, act: Activation, causal: bool
    ) -> None:
        super().__init__()
        self.width = width
        self.causal = causal
        # recompute each block's activations in backward instead of storing them
        self.grad_checkpointing = False
        self.resblocks = nn.ModuleList(
            ResidualBlock(width, heads, mlp_ratio, act) for _ in range(layers)
        )

    def forward(
        self,
        x: torch.Tensor,
        block_hook: BlockHook | None = None,
        start: int = 0,
        stop: int | None = None,
        keep: int | None = None,
    ) -> torch.Tensor:
        """Run blocks ``start .. stop - 1`` (all by default; a sub-range lets fine-tuning
        cache the output of frozen leading blocks). The hook sees each block's index.

        ``keep``: return only the first ``keep`` tokens, and compute only them in the
        last block (the others' keys and values are still needed there): a tower read
        out from its class token skips most of its last block, the same result to float
        rounding (ViT-B/16: about 7 % of its FLOPs)."""
        stop = len(self.resblocks) if stop is None else stop
        for i in range(start, stop):
            block = self.resblocks[i]
            if block_hook is not None:
                x = block_hook(i, x)
            queries = keep if i == stop - 1 else None
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, self.causal, queries, use_reentrant=False)
            else:
                x = block(x, causal=self.causal, queries=queries)
        return x if keep is None else x[:, :keep]


def init_transformer_(transformer: Transformer) -> None:
    """OpenAI CLIP's initialisation of a transformer stack (scaled by depth)."""
    width, layers = transformer.width, len(transformer.resblocks)
    proj_std = width**-0.5 * (2 * layers) ** -0.5
    attn_std = width**-0.5
    fc_std = (2 * width) ** -0.5
    for block in transformer.resblocks:
        nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
        nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
        nn.init.zeros_(block.attn.out_proj.bias)
        nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
        nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
