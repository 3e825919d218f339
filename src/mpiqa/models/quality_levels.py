"""Zero-shot quality over five quality levels: the readout mpiqa's own backbones are
pre-trained with (``mpiqa pretrain-backbone``), so the shipped default scores with what
its backbone learned, with nothing trained on top.

score = sum_k p_k * v_k, where p is the softmax of the image-text logits over the five
level words ``bad, poor, fair, good, perfect`` (each the mean embedding of
:data:`~mpiqa.prompts.vocab.QUALITY_TEMPLATES`) and v_k = 0, 0.25, ..., 1: the expected
level, as LIQE and the prompt models read quality out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mpiqa.backbones.clip import CLIP
from mpiqa.backbones.tokenizer import tokenize
from mpiqa.data.transforms import CropMode
from mpiqa.models.base import IQAModel
from mpiqa.prompts.vocab import QUALITY_5, QUALITY_TEMPLATES


def class_embeddings(backbone: CLIP, captions: list[str], templates: int) -> torch.Tensor:
    """Normalised text embeddings averaged over each class's ``templates`` consecutive
    captions: (classes, embed_dim)."""
    tokens = tokenize(captions, backbone.context_length).to(backbone.logit_scale.device)
    text = F.normalize(backbone.encode_text(tokens), dim=-1)
    return F.normalize(text.view(-1, templates, text.shape[-1]).mean(1), dim=-1)


def level_text_features(backbone: CLIP, templates: tuple[str, ...] = QUALITY_TEMPLATES):
    """(5, embed_dim) normalised text embeddings of the quality levels, each averaged over
    ``templates`` (format strings with one ``{}`` for the level word)."""
    captions = [t.format(word) for word in QUALITY_5 for t in templates]
    return class_embeddings(backbone, captions, len(templates))


def expected_level(
    image: torch.Tensor, level_text: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Expected quality in [0, 1] under the softmax over the level texts."""
    probs = (logit_scale * F.normalize(image, dim=-1) @ level_text.t()).softmax(-1)
    values = torch.linspace(0, 1, level_text.shape[0], device=probs.device, dtype=probs.dtype)
    return probs @ values


class QualityLevelsIQA(IQAModel):
    """Zero-shot quality in [0, 1] (higher = better) over five level words.

    Args:
        backbone: a CLIP from :func:`mpiqa.load_clip` (meant for mpiqa's pre-trained
            backbones, which learned these words; any CLIP works).
        crop, n_crops: preprocessing (see :class:`IQAModel`).
    """

    lower_better = False
    score_range = (0.0, 1.0)

    def __init__(self, backbone: CLIP, crop: CropMode = "center", n_crops: int = 5) -> None:
        super().__init__(backbone.image_size, backbone.config.vision.patch_size, crop, n_crops)
        self.backbone = backbone.eval().requires_grad_(False)
        with torch.no_grad():
            text = level_text_features(self.backbone)
        # Not persistent: derived from the backbone, never saved.
        self.register_buffer("level_text", text, persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        image = self.backbone.encode_image(pixels)
        # The readout in float32 even under bf16/fp16 autocast: a softmax over
        # temperature-scaled logits rounded to 8 bits moves scores by several hundredths.
        with torch.autocast(image.device.type, enabled=False):
            return expected_level(
                image.float(), self.level_text.float(), self.backbone.logit_scale.exp().float()
            )
