"""Learnable text prompts (CoOp): context vectors in front of class words.

A prompt is ``[SOS] ctx_1 .. ctx_M <class text> [EOS]``; the class text is fixed (its
token embeddings are frozen buffers) and the context vectors train. Context can be one
set shared by every class, or one set per class (CoOp's class-specific context).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mpiqa.backbones.clip import CLIP
from mpiqa.backbones.tokenizer import default_tokenizer, tokenize


class TextPromptLearner(nn.Module):
    """Prompt embeddings for a list of class texts.

    Args:
        backbone: the CLIP whose token embedding and context length are used (not kept).
        class_texts: the text after the context, one per prompt (e.g. "blurry photo.").
        n_ctx: number of context vectors (ignored when ``ctx_init`` is given: its token
            count is used).
        ctx_init: initialise the context from this phrase's token embeddings
            (e.g. "a photo of a"); default: random normal, std 0.02 (CoOp).
        class_specific: one context per class instead of one shared.
    """

    def __init__(
        self,
        backbone: CLIP,
        class_texts: Sequence[str],
        n_ctx: int = 4,
        ctx_init: str | None = None,
        class_specific: bool = False,
    ) -> None:
        super().__init__()
        if not class_texts:
            raise ValueError("at least one class text is needed")
        embedding = backbone.text.token_embedding
        length = backbone.context_length
        with torch.no_grad():
            if ctx_init:
                init_ids = default_tokenizer().encode(ctx_init)
                n_ctx = len(init_ids)
                init = embedding(torch.tensor(init_ids, device=embedding.weight.device)).float()
            else:
                init = torch.randn(n_ctx, embedding.embedding_dim) * 0.02
            placeholder = " ".join(["X"] * n_ctx)
            ids = tokenize([f"{placeholder} {text}" for text in class_texts], context_length=length)
            ids = ids.to(embedding.weight.device)
            token_embeddings = embedding(ids).float()
        n_classes = len(class_texts)
        ctx = init.unsqueeze(0).repeat(n_classes if class_specific else 1, 1, 1)
        self.ctx = nn.Parameter(ctx.cpu())
        self.n_ctx = n_ctx
        self.class_texts = tuple(class_texts)
        eot = ids.argmax(dim=-1).cpu()
        # Causal attention: tokens after the last end-of-text never reach a feature, so the
        # sequences are cut there (77 -> ~15 positions, a large saving on the CPU).
        keep = int(eot.max()) + 1
        self.register_buffer("prefix", token_embeddings[:, :1].cpu().contiguous(), persistent=False)
        self.register_buffer(
            "suffix", token_embeddings[:, 1 + n_ctx : keep].cpu().contiguous(), persistent=False
        )
        self.register_buffer("eot_index", eot, persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_classes, L, width) prompt embeddings and (n_classes,) end-of-text positions."""
        ctx = self.ctx.expand(len(self.class_texts), -1, -1) if self.ctx.shape[0] == 1 else self.ctx
        return torch.cat(
            [self.prefix, ctx.to(self.prefix.dtype), self.suffix], dim=1
        ), self.eot_index
