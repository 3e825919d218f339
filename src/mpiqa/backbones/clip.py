"""The CLIP backbone: one image tower, one text tower, a learned temperature."""

from __future__ import annotations

import math

import torch
from torch import nn

from mpiqa.backbones.config import CLIPConfig
from mpiqa.backbones.resnet import ModifiedResNet
from mpiqa.backbones.text import TextTransformer
from mpiqa.backbones.vision import VisionTransformer


class CLIP(nn.Module):
    """CLIP with OpenAI's semantics: ``encode_image`` / ``encode_text`` return the
    projected, unnormalised embeddings; ``forward`` returns the image-text logits.

    State-dict keys are OpenAI's with the text tower under ``text.`` (as open_clip's
    CustomTextCLIP): ``visual.*``, ``text.token_embedding.weight``, ``logit_scale``.
    The image tower is a Vision Transformer, or CLIP's ResNet when the config has
    ``resnet_layers``.
    """

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = config
        self.visual: VisionTransformer | ModifiedResNet = (
            ModifiedResNet(config.vision, config.embed_dim)
            if config.vision.is_resnet
            else VisionTransformer(config.vision, config.embed_dim, config.act)
        )
        self.text = TextTransformer(config.text, config.embed_dim, config.act)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def image_size(self) -> int:
        return self.config.vision.image_size

    @property
    def context_length(self) -> int:
        return self.config.text.context_length

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the transformer blocks' activations in backward instead of keeping
        them (both towers): less memory for training, about one extra forward pass of
        time. Results are unchanged. (A ResNet image tower keeps its activations.)"""
        if isinstance(self.visual, VisionTransformer):
            self.visual.transformer.grad_checkpointing = enable
        self.text.transformer.grad_checkpointing = enable

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) CLIP-normalised pixels -> (N, embed_dim)."""
        return self.visual(pixels)

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """(N, context_length) token ids from :func:`mpiqa.tokenize` -> (N, embed_dim)."""
        return self.text(token_ids)

    def forward(
        self, pixels: torch.Tensor, token_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (logits_per_image, logits_per_text) as OpenAI's CLIP does."""
        image = nn.functional.normalize(self.encode_image(pixels), dim=-1)
        text = nn.functional.normalize(self.encode_text(token_ids), dim=-1)
        logits = self.logit_scale.exp() * image @ text.t()
        return logits, logits.t()
