"""Multi-modal prompt IQA (after Pan et al., "Multi-Modal Prompt Learning on Blind Image
Quality Assessment", 2024): deep visual prompts in the image tower, and text prompts
that recognise scene category and distortion type together with quality.

How a score is read (the paper leaves it open): each prompt family holds one prompt per
(class, quality level), e.g. "<ctx> a landscape, good quality." By default
(``readout="family-mean"``) the image's cosine logits over each family are soft-maxed
within the family; summing out the class gives that family's quality distribution,
summing out quality its class distribution; the families' quality distributions are
averaged, so each family weighs the same whatever its number of classes. LIQE, which the
paper builds on, instead takes one softmax over the prompts of all families
(``readout="joint"``). The score is the expected quality with level weights evenly spaced
in [0, 1] (for two levels, p(high)). Every choice here is a field of :class:`MMPConfig`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mpiqa.backbones.clip import CLIP
from mpiqa.data.transforms import CropMode
from mpiqa.models.base import IQAModel
from mpiqa.options import options_from_dict
from mpiqa.prompts.text import TextPromptLearner
from mpiqa.prompts.visual import TextToVisualCoupling, VisualPromptLearner
from mpiqa.prompts.vocab import DISTORTIONS, QUALITY_2, QUALITY_5, SCENE_PHRASES, SCENES

Family = Literal["quality", "scene", "distortion"]


@dataclass
class MMPConfig:
    """Everything that defines the prompt model on top of a backbone.

    Attributes:
        families: prompt families; "quality" alone is the plain CoOp quality prompt.
        quality_levels: 2 (low/high) or 5 (bad/poor/fair/good/perfect).
        n_ctx, ctx_init, class_specific: text context (see TextPromptLearner).
        share_ctx: one context for all families instead of one each.
        visual_tokens, visual_depth: VPT-deep size; visual_depth 0 turns visual prompts off.
        visual_projection: shared Linear over the visual prompts (GRMP-IQA's code).
        coupling: "maple" derives visual prompts from the first family's text context.
        train_visual_blocks, train_text_blocks: also train the last K blocks of a tower
            (and its final layer norm).
        train_text_context, train_visual_prompts: freeze one kind of prompt (ablations,
            and GRMP-IQA's fine-tuning, which keeps the meta-learned visual prompts).
        visual_prompt_dropout: dropout on the visual prompts while training.
        visual_prompt_norm: a trained LayerNorm (eps 1e-6) over the image tower's tokens
            after its last block, before its own final norm (GRMP-IQA's ``prompt_norm``).
        readout: ``family-mean`` soft-maxes each family on its own and averages their
            quality distributions; ``joint`` takes one softmax over the prompts of all
            families (LIQE's readout). With one family they agree.
    """

    families: tuple[str, ...] = ("scene", "distortion")
    quality_levels: int = 5
    n_ctx: int = 4
    ctx_init: str | None = None
    class_specific: bool = False
    share_ctx: bool = False
    visual_tokens: int = 8
    visual_depth: int = 12
    visual_projection: bool = False
    coupling: Literal["none", "maple"] = "none"
    train_visual_blocks: int = 0
    train_text_blocks: int = 0
    train_text_context: bool = True
    train_visual_prompts: bool = True
    readout: Literal["family-mean", "joint"] = "family-mean"
    visual_prompt_dropout: float = 0.0
    visual_prompt_norm: bool = False

    def __post_init__(self) -> None:
        self.families = tuple(self.families)
        unknown = set(self.families) - {"quality", "scene", "distortion"}
        if unknown or not self.families:
            raise ValueError(
                f"families must be drawn from quality, scene, distortion; got {self.families}"
            )
        if self.quality_levels not in (2, 5):
            raise ValueError(f"quality_levels must be 2 or 5, got {self.quality_levels}")
        if not 0 <= self.visual_prompt_dropout < 1:
            raise ValueError(
                f"visual_prompt_dropout must be in [0, 1), got {self.visual_prompt_dropout}"
            )
        if self.readout not in ("family-mean", "joint"):
            raise ValueError(f"readout must be 'family-mean' or 'joint', got {self.readout!r}")
        if self.coupling not in ("none", "maple"):
            raise ValueError(f"coupling must be 'none' or 'maple', got {self.coupling!r}")

    @classmethod
    def from_dict(cls, data: dict) -> MMPConfig:
        return options_from_dict(cls, data, "model")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Prediction:
    score: torch.Tensor  # (N,)
    quality: torch.Tensor  # (N, Q)
    scene: torch.Tensor | None = None  # (N, len(SCENES))
    distortion: torch.Tensor | None = None  # (N, len(DISTORTIONS))
    image_features: torch.Tensor | None = None  # (N, embed_dim), normalised


def _class_texts(family: str, quality: tuple[str, ...]) -> list[str]:
    if family == "quality":
        return [f"{q} quality." for q in quality]
    if family == "scene":
        return [f"{SCENE_PHRASES[s]}, {q} quality." for s in SCENES for q in quality]
    return [f"a photo with {d}, {q} quality." for d in DISTORTIONS for q in quality]


def _n_classes(family: str) -> int:
    return {"quality": 1, "scene": len(SCENES), "distortion": len(DISTORTIONS)}[family]


class MultiModalPromptIQA(IQAModel):
    """Quality in [0, 1] (higher = better), plus scene and distortion predictions.

    Args:
        backbone: a CLIP from :func:`mpiqa.load_clip`; frozen except the blocks the config
            asks to train.
        config: the prompt configuration.
    """

    lower_better = False
    score_range = (0.0, 1.0)

    def __init__(
        self,
        backbone: CLIP,
        config: MMPConfig | None = None,
        crop: CropMode = "center",
        n_crops: int = 5,
    ) -> None:
        if backbone.config.vision.is_resnet:
            raise ValueError(
                f"multi-modal prompts go between the blocks of a Vision Transformer; "
                f"{backbone.config.name or 'this backbone'} has a ResNet image tower"
            )
        super().__init__(backbone.image_size, backbone.config.vision.patch_size, crop, n_crops)
        self.config = config = config or MMPConfig()
        self.backbone = backbone
        self.quality_words = QUALITY_5 if config.quality_levels == 5 else QUALITY_2
        self.register_buffer(
            "level_weights", torch.linspace(0, 1, config.quality_levels), persistent=False
        )
        learners = {}
        for i, family in enumerate(config.families):
            learner = TextPromptLearner(
                backbone,
                _class_texts(family, self.quality_words),
                config.n_ctx,
                config.ctx_init,
                config.class_specific,
            )
            if config.share_ctx and i > 0:
                learner.ctx = learners[config.families[0]].ctx  # one Parameter, trained once
            learners[family] = learner
        self.text_prompts = nn.ModuleDict(learners)
        vision = backbone.config.vision
        self.visual_prompts = (
            VisualPromptLearner(
                vision.width,
                config.visual_tokens,
                min(config.visual_depth, vision.layers),
                vision.patch_size,
                config.visual_projection,
                config.visual_prompt_dropout,
            )
            if config.visual_depth > 0
            else None
        )
        self.prompt_norm = (
            nn.LayerNorm(vision.width, eps=1e-6) if config.visual_prompt_norm else None
        )
        self.coupling = None
        if config.coupling == "maple":
            if self.visual_prompts is None:
                raise ValueError("coupling='maple' needs visual prompts (visual_depth > 0)")
            first = self.text_prompts[config.families[0]]
            self.visual_prompts.n_tokens = first.n_ctx
            self.coupling = TextToVisualCoupling(
                backbone.config.text.width, vision.width, self.visual_prompts.depth
            )
            self.visual_prompts.prompts.requires_grad_(False)  # replaced by the coupled prompts
        self._text_cache: tuple[tuple, dict[str, torch.Tensor]] | None = None
        self.freeze_backbone()
        if not config.train_text_context:
            self.text_prompts.requires_grad_(False)
        if not config.train_visual_prompts and self.prompt_norm is not None:
            self.prompt_norm.requires_grad_(False)
        if not config.train_visual_prompts and self.visual_prompts is not None:
            self.visual_prompts.requires_grad_(False)
            if self.coupling is not None:
                self.coupling.requires_grad_(False)

    # ----------------------------------------------------------------- what trains
    def freeze_backbone(self) -> None:
        """Freeze the backbone except the last K blocks (and final norm) the config asks
        for. Frozen tensors get ``requires_grad=False``: no memory goes to their grads."""
        self.backbone.requires_grad_(False)
        for tower, k, norm in (
            (self.backbone.visual, self.config.train_visual_blocks, self.backbone.visual.ln_post),
            (self.backbone.text, self.config.train_text_blocks, self.backbone.text.ln_final),
        ):
            if k > 0:
                for block in tower.transformer.resblocks[-k:]:
                    block.requires_grad_(True)
                norm.requires_grad_(True)

    def trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        seen = set()
        for name, param in self.named_parameters():
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                yield name, param

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: every prompt tensor, trained or frozen, and the
        backbone's tensors that trained (the others come from its weights file). A frozen
        prompt may hold values from elsewhere (meta-learned prompts, a fine-tuning's
        starting model) that a model rebuilt from the configuration would not have."""
        return {
            name: p.detach().clone()
            for name, p in self.named_parameters()
            if p.requires_grad or not name.startswith("backbone.")
        }

    # ----------------------------------------------------------------- forward
    def _text_features(self) -> dict[str, torch.Tensor]:
        # Text features depend on the text prompts and the text tower alone; in-place
        # updates (optimiser steps, loads) bump a tensor's _version and so refresh the cache.
        params = [*self.text_prompts.parameters(), *self.backbone.text.parameters()]
        key = tuple((id(p), p._version, p.device) for p in params)
        if (
            not torch.is_grad_enabled()
            and self._text_cache is not None
            and self._text_cache[0] == key
        ):
            return self._text_cache[1]
        features = {}
        for family, learner in self.text_prompts.items():
            embeddings, eot = learner()
            features[family] = F.normalize(
                self.backbone.text.encode_embeddings(embeddings, eot), dim=-1
            )
        if not torch.is_grad_enabled():
            self._text_cache = (key, features)
        return features

    def _visual_hook(self):
        if self.visual_prompts is None:
            return None
        external = None
        if self.coupling is not None:
            ctx = self.text_prompts[self.config.families[0]].ctx[0]
            external = self.coupling(ctx)
        return self.visual_prompts.hook(external)

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.prompt_norm is not None:
            tokens = self.prompt_norm(tokens)
        return F.normalize(self.backbone.visual.pool(tokens), dim=-1)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        visual = self.backbone.visual
        tokens = visual.transformer(visual.embed(pixels), block_hook=self._visual_hook(), keep=1)
        return self._pool(tokens)

    def image_tokens(self, pixels: torch.Tensor, blocks: int) -> torch.Tensor:
        """The image tower's tokens after its first ``blocks`` blocks (visual prompts
        inserted): what fine-tuning caches when those blocks and their prompts stay
        frozen, so each step runs only the blocks after them."""
        visual = self.backbone.visual
        tokens = visual.embed(pixels)
        return visual.transformer(tokens, block_hook=self._visual_hook(), stop=blocks)

    def encode_image_tokens(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """:meth:`encode_image` from :meth:`image_tokens` ``(pixels, start)``."""
        visual = self.backbone.visual
        hook = self._visual_hook() if start < len(visual.transformer.resblocks) else None
        tokens = visual.transformer(
            tokens.to(visual.proj.dtype), block_hook=hook, start=start, keep=1
        )
        return self._pool(tokens)

    def predict(self, pixels: torch.Tensor) -> Prediction:
        return self.predict_image_features(self.encode_image(pixels))

    def predict_image_tokens(self, tokens: torch.Tensor, start: int) -> Prediction:
        """:meth:`predict` from cached tokens (see :meth:`image_tokens`)."""
        return self.predict_image_features(self.encode_image_tokens(tokens, start))

    def predict_image_features(self, image: torch.Tensor) -> Prediction:
        """Scores and class probabilities from normalised image embeddings (N, D)."""
        scale = self.backbone.logit_scale.exp()
        n_q, n = self.config.quality_levels, image.shape[0]
        texts = self._text_features()
        logits = {f: (scale * image @ t.t().to(image.dtype)).float() for f, t in texts.items()}
        if self.config.readout == "joint":
            # LIQE: one softmax over every (family, class, quality) prompt together
            probs = torch.cat(list(logits.values()), dim=-1).softmax(dim=-1)
            parts = dict(zip(logits, probs.split([v.shape[-1] for v in logits.values()], -1),
                             strict=True))  # fmt: skip
        else:
            parts = {f: v.softmax(dim=-1) for f, v in logits.items()}
        quality, classes = [], {}
        for family, part in parts.items():
            joint = part.view(n, _n_classes(family), n_q)
            quality.append(joint.sum(dim=1))
            if family != "quality":
                marginal = joint.sum(dim=2)
                classes[family] = marginal / marginal.sum(dim=1, keepdim=True)
        if self.config.readout == "joint":
            p_quality = torch.stack(quality).sum(dim=0)
        else:
            p_quality = torch.stack(quality).mean(dim=0)
        score = p_quality @ self.level_weights
        return Prediction(score, p_quality, classes.get("scene"), classes.get("distortion"), image)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.predict(pixels).score

    #: families whose class is worth printing: those trained with labels of their own
    #: (set from a checkpoint's loss weights); ``None``: every family the prompts have
    labelled_families: tuple[str, ...] | None = None

    @property
    def extra_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        """``distortion``/``scene`` (+ ``_prob``) columns for the families the model was
        trained to tell apart (:attr:`labelled_families`); a family that only shaped the
        prompts' wording, with no labels, would print confident guesses."""
        columns = []
        for family in ("distortion", "scene"):
            if family in self.config.families and (
                self.labelled_families is None or family in self.labelled_families
            ):
                columns += [family, f"{family}_prob"]
        return tuple(columns)

    @torch.no_grad()
    def describe_crops(self, crops):
        """Scores, and the most probable distortion class and scene of each image (class
        probabilities averaged over its crops)."""
        if not crops:
            return torch.empty(0), []
        outputs = [self.predict(c.to(self.device)) for c in crops] if self.crop == "full" else None
        if outputs is None:
            counts = [c.shape[0] for c in crops]
            flat = self.predict(torch.cat(list(crops)).to(self.device))
            parts = {
                name: getattr(flat, name).float().cpu().split(counts)
                for name in ("score", "scene", "distortion")
                if getattr(flat, name) is not None
            }
            outputs = [{name: parts[name][i] for name in parts} for i in range(len(crops))]
        else:
            outputs = [
                {
                    n: getattr(o, n).float().cpu()
                    for n in ("score", "scene", "distortion")
                    if getattr(o, n) is not None
                }
                for o in outputs
            ]
        scores, extras = [], []
        for out in outputs:
            scores.append(out["score"].mean())
            row = {}
            for family, names in (("distortion", DISTORTIONS), ("scene", SCENES)):
                if family in out:
                    probs = out[family].mean(dim=0)
                    row[family] = names[int(probs.argmax())]
                    row[f"{family}_prob"] = f"{float(probs.max()):.4f}"
            extras.append(row)
        return torch.stack(scores), extras
