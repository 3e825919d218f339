"""Zero-shot quality from antonym prompts (CLIP-IQA, Wang et al., AAAI 2023).

score = softmax over each (positive, negative) prompt pair of CLIP's image-text logits,
probability of the positive prompt, averaged over the pairs.

With a ResNet backbone (``RN50`` ...) the defaults are the paper's: each image is scored
whole at its own resolution (``crop="full"``) and the attention pool's positional
embedding is left out (``positional="drop"``), so no resize touches the distortions.
Where we differ from the authors' code (IceClear/CLIP-IQA, built on OpenAI's CLIP):
- ``full`` mode downscales an image whose longer side exceeds 1,024 pixels (memory),
  enlarges one with a side under 32 pixels to 32, and cuts the last (under 32) rows and
  columns that do not fill a cell of the last feature map, which OpenAI's ResNet would
  average away at its edge; the paper's code feeds every image unchanged.
- ``positional="interpolate"`` (bicubically resized positional embedding) is offered as
  an alternative; the paper only removes it.
- ViT backbones keep their positional embedding (resized in ``full`` mode): a ViT's
  tokens carry no position without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mpiqa.backbones.clip import CLIP
from mpiqa.backbones.resnet import POSITIONAL_MODES, Positional
from mpiqa.backbones.tokenizer import tokenize
from mpiqa.data.transforms import CropMode
from mpiqa.models.base import IQAModel

PromptPair = tuple[str, str]

DEFAULT_PAIRS: tuple[PromptPair, ...] = (("Good photo.", "Bad photo."),)
# Quality antonyms in the spirit of CLIP-IQA's ablations; the mean over pairs is steadier
# than any one wording.
ENSEMBLE_PAIRS: tuple[PromptPair, ...] = (
    ("Good photo.", "Bad photo."),
    ("High quality photo.", "Low quality photo."),
    ("Sharp photo.", "Blurry photo."),
    ("Clean photo.", "Noisy photo."),
    ("High resolution photo.", "Low resolution photo."),
    ("Bright photo.", "Dark photo."),
)


class CLIPIQA(IQAModel):
    """Zero-shot CLIP quality score in [0, 1], higher = better.

    Args:
        backbone: a CLIP from :func:`mpiqa.load_clip`.
        pairs: (positive, negative) prompt pairs.
        crop: preprocessing mode (see :class:`IQAModel`); default ``full`` for a ResNet
            backbone (the paper's), else ``center``.
        n_crops: crops per image in ``multi`` mode.
        positional: ResNet backbones only: ``drop`` the attention pool's positional
            embedding (default in ``full`` mode, as the paper) or ``interpolate`` it.

    Raises:
        ValueError: no prompt pairs, or ``positional="drop"`` with a ViT backbone.
    """

    lower_better = False
    score_range = (0.0, 1.0)

    def __init__(
        self,
        backbone: CLIP,
        pairs: Sequence[PromptPair] = DEFAULT_PAIRS,
        crop: CropMode | None = None,
        n_crops: int = 5,
        positional: Positional | None = None,
    ) -> None:
        resnet = backbone.config.vision.is_resnet
        crop = crop or ("full" if resnet else "center")
        super().__init__(backbone.image_size, backbone.config.vision.patch_size, crop, n_crops)
        if not pairs:
            raise ValueError("at least one prompt pair is needed")
        if positional is not None and positional not in POSITIONAL_MODES:
            raise ValueError(f"positional must be one of {POSITIONAL_MODES}, got {positional!r}")
        if resnet:
            backbone.visual.positional = positional or ("drop" if crop == "full" else "interpolate")
        elif positional == "drop":
            raise ValueError("positional='drop' is for ResNet backbones (RN50 ...)")
        self.backbone = backbone.eval().requires_grad_(False)
        self.pairs = tuple((str(p), str(n)) for p, n in pairs)
        texts = [t for pair in self.pairs for t in pair]
        tokens = tokenize(texts, context_length=backbone.context_length).to(
            backbone.logit_scale.device
        )
        with torch.no_grad():
            text_features = F.normalize(backbone.encode_text(tokens), dim=-1)
        # Not persistent: derived from the backbone and prompts, never saved.
        self.register_buffer("text_features", text_features, persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        image = F.normalize(self.backbone.encode_image(pixels), dim=-1)
        logits = self.backbone.logit_scale.exp() * image @ self.text_features.t()
        probs = logits.view(pixels.shape[0], len(self.pairs), 2).softmax(
            dim=-1
        )  # shape[0]: traceable
        return probs[..., 0].mean(dim=-1)
