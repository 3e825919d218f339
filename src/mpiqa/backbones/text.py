"""CLIP's causal text transformer."""

from __future__ import annotations

import torch
from torch import nn

from mpiqa.backbones.config import Activation, TextConfig
from mpiqa.backbones.layers import BlockHook, Transformer, init_transformer_, is_traced


class TextTransformer(nn.Module):
    """Token + position embeddings, causal transformer, projected end-of-text feature.

    Learned text prompts (CoOp style) enter as token embeddings: build them with
    :meth:`embed`, overwrite the context positions, and call :meth:`encode_embeddings`
    with the position of each sequence's end-of-text token.
    """

    def __init__(self, config: TextConfig, output_dim: int, act: Activation) -> None:
        super().__init__()
        self.config = config
        width = config.width
        self.token_embedding = nn.Embedding(config.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, width))
        self.transformer = Transformer(
            width, config.layers, config.heads, config.mlp_ratio, act, causal=True
        )
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, output_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=width**-0.5)
        init_transformer_(self.transformer)

    @property
    def context_length(self) -> int:
        return self.config.context_length

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """(N, L) ids -> (N, L, width) token embeddings (no positions yet)."""
        return self.token_embedding(token_ids)

    def encode_embeddings(
        self,
        embeddings: torch.Tensor,
        eot_index: torch.Tensor,
        block_hook: BlockHook | None = None,
    ) -> torch.Tensor:
        """(N, L, width) token embeddings -> (N, embed_dim) projected, unnormalised features
        taken at ``eot_index`` (N,), the position of each end-of-text token."""
        if block_hook is None and not is_traced():
            # Attention is causal, so positions after the last end-of-text token cannot
            # change the features taken at it: drop them (prompts are ~15 of 77 tokens,
            # which makes the text tower several times cheaper when prompts train).
            embeddings = embeddings[:, : int(eot_index.max()) + 1]
        length = embeddings.shape[1]
        x = embeddings + self.positional_embedding[:length].to(embeddings.dtype)
        x = self.ln_final(self.transformer(x, block_hook=block_hook))
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]
        return x @ self.text_projection

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        # The end-of-text token has the largest id in CLIP's vocabulary, as in OpenAI's code.
        return self.encode_embeddings(self.embed(token_ids), token_ids.argmax(dim=-1))
