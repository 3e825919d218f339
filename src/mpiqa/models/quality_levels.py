"""Zero-shot quality over five quality levels: the readout mpiqa's own backbones are
pre-trained with (``mpiqa pretrain-backbone``), so the shipped default scores with what
its backbone learned, with nothing trained on top.

score = sum_k p_k * v_k, where p is the softmax of the image-text logits over the five
level words ``bad, poor, fair, good, perfect`` (each the mean embedding of
:data:`~mpiqa.prompts.vocab.QUALITY_TEMPLATES`) and v_k = 0, 0.25, ..., 1: the expected
level, as LIQE and the prompt models read quality out.

An ensemble (``extra_heads``) averages that score over several image towers that share
one convolutional stem: each :class:`LevelHead` is a tower trained with another seed,
with the level texts of its own text tower. The stem, most of the cost, runs once. A
:class:`LinearProbe` (a ridge regression on the stem's global statistics, fitted by
:mod:`mpiqa.training.probe`) may join it: the score is then ``(1 - probe_share)`` times
the towers' mean plus ``probe_share`` times the probe's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mpiqa.backbones.clip import CLIP
from mpiqa.backbones.convert import CheckpointError, check_weight_values
from mpiqa.backbones.layers import is_traced
from mpiqa.backbones.tokenizer import tokenize
from mpiqa.backbones.vision import VisionTransformer
from mpiqa.data.transforms import STATS, CropMode
from mpiqa.models.base import IQAModel
from mpiqa.models.resize import resize_uint8_exact
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


def _readout(image: torch.Tensor, level_text: torch.Tensor, logit_scale: torch.Tensor):
    # In float32 even under bf16/fp16 autocast: a softmax over temperature-scaled logits
    # rounded to 8 bits moves scores by several hundredths.
    with torch.autocast(image.device.type, enabled=False):
        return expected_level(image.float(), level_text.float(), logit_scale.exp().float())


class LevelHead(nn.Module):
    """One more member of an ensemble: an image tower whose stem is the ensemble's, the
    level texts of its own text tower, and its (log) temperature.

    Args:
        visual: the tower (a hybrid :class:`VisionTransformer`).
        level_text: (5, embed_dim) from :func:`level_text_features` of its CLIP.
        logit_scale: its CLIP's ``logit_scale`` (a log).
    """

    def __init__(
        self, visual: VisionTransformer, level_text: torch.Tensor, logit_scale: torch.Tensor
    ) -> None:
        super().__init__()
        self.visual = visual
        self.register_buffer("level_text", level_text.detach().clone())
        self.register_buffer("logit_scale", logit_scale.detach().clone().reshape(()))

    @classmethod
    def from_backbone(cls, backbone: CLIP) -> LevelHead:
        with torch.no_grad():
            return cls(backbone.visual, level_text_features(backbone), backbone.logit_scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The stem's features (:meth:`VisionTransformer.stem_features`) -> scores."""
        visual = self.visual
        image = visual.pool(visual.transformer(visual.embed_features(features), keep=1))
        return _readout(image, self.level_text, self.logit_scale)


def resize_like_pillow(
    pixels: torch.Tensor, size: tuple[int, int], eight_bit: bool | None = None
) -> torch.Tensor:
    """(N, 3, H, W) pixels, uint8 or float in [0, 255], resized to ``size`` as Pillow's
    bicubic resize does it: antialiased, values on the 8-bit grid (within 2 / 255 of
    Pillow's, tested). Returns uint8 for uint8 input, float32 otherwise.

    ``eight_bit`` (default: on a CPU, unless exported to ONNX) lets torch resize 8-bit
    images itself (channels-last, about 15 times faster than in float there); otherwise
    :func:`~mpiqa.models.resize.resize_uint8_exact` computes the same values with ops
    every device and exporter has."""
    if eight_bit is None:
        eight_bit = pixels.device.type == "cpu" and not torch.onnx.is_in_onnx_export()
    given_uint8 = pixels.dtype == torch.uint8
    if eight_bit:
        x = pixels if given_uint8 else pixels.round().clamp(0, 255).to(torch.uint8)
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True)
        return x if given_uint8 else x.float()
    x = resize_uint8_exact(pixels.float().round().clamp(0, 255), size)
    return x.to(torch.uint8) if given_uint8 else x


def _read_tagged(path: Path, format_tag: str, kind: str, with_metadata: bool = False):
    """The tensors of a safetensors file whose metadata says ``format_tag``, checked
    finite (and with ``with_metadata`` its metadata too); CheckpointError naming the file
    otherwise."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # SafetensorError and friends: a malformed file
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if meta.get("format") != format_tag:
        raise CheckpointError(f"{path}: not an mpiqa {kind} file (format {meta.get('format')!r})")
    check_weight_values(tensors, path)
    return (tensors, meta) if with_metadata else tensors


class LinearProbe(nn.Module):
    """A linear map of the stem's global statistics onto quality, clipped to [0, 1]:
    ``((stats - mean) / std) @ weight + bias``.

    With ``detail``, the statistics are those of the towers' view followed by those of a
    second, finer view: the centre ``detail`` x ``detail`` crop of the model's input, an
    image of ``input_size`` pixels a side (before it is resized for the towers), so
    that the probe sees fine noise and blur the towers' resize hides.

    Args:
        mean, std, weight: (C,) standardisation and coefficients.
        bias: (1,).
        detail: side of the finer view's crop, or ``None`` (the towers' view alone).
        input_size: side of the images the model takes when ``detail`` is set.

    Raises:
        ValueError: ``detail`` without an ``input_size`` it fits in.
    """

    def __init__(
        self,
        mean: torch.Tensor,
        std: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        detail: int | None = None,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        if detail is not None and (input_size is None or not 0 < detail <= input_size):
            raise ValueError(
                f"a probe's detail crop ({detail}) needs an input_size at least as large, "
                f"got {input_size}"
            )
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone().reshape(1))
        self.detail = detail
        self.input_size = input_size if detail is not None else None

    @property
    def channels(self) -> int:
        return self.weight.shape[0]

    @property
    def views(self) -> int:
        """How many views' statistics it reads, one after the other (1 or 2)."""
        return 1 if self.detail is None else 2

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        """(N, C) global statistics -> (N,) scores in [0, 1] (float32)."""
        with torch.autocast(stats.device.type, enabled=False):
            z = (stats.float() - self.mean) / self.std
            return (z @ self.weight + self.bias).clamp(0, 1)


# images per pass of the towers' view on a CPU (see QualityLevelsIQA._tower_view)
_CPU_VIEW_CHUNK = 8

PROBE_FORMAT = "mpiqa-level-probe/1"


def load_linear_probe(path: str | Path, channels: int) -> LinearProbe:
    """The probe stored in ``path`` (tensors ``mean``, ``std``, ``weight``, ``bias``; its
    views in the metadata ``detail`` and ``input_size``).

    Args:
        channels: the stem's statistics per view; a probe of two views reads twice as many.

    Raises:
        CheckpointError: unreadable, of another format, or not as wide as its views need
            (naming the file).
    """
    path = Path(path)
    tensors, meta = _read_tagged(path, PROBE_FORMAT, "probe", with_metadata=True)
    try:
        detail = int(meta["detail"]) if meta.get("detail") else None
        input_size = int(meta["input_size"]) if meta.get("input_size") else None
    except ValueError:
        raise CheckpointError(f"{path}: detail / input_size metadata must be integers") from None
    width = channels * (1 if detail is None else 2)
    shapes = {"mean": (width,), "std": (width,), "weight": (width,), "bias": (1,)}
    if {k: tuple(v.shape) for k, v in tensors.items()} != shapes:
        raise CheckpointError(f"{path}: a probe of {width} channels needs tensors {shapes}")
    if not bool((tensors["std"] > 0).all()):
        raise CheckpointError(f"{path}: the probe's std must be positive")
    try:
        return LinearProbe(
            *(tensors[k].float() for k in ("mean", "std", "weight", "bias")),
            detail=detail,
            input_size=input_size,
        )
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None


def _same_tensors(a: nn.Module | None, b: nn.Module | None) -> bool:
    if a is None or b is None:
        return a is b
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class QualityLevelsIQA(IQAModel):
    """Zero-shot quality in [0, 1] (higher = better) over five level words.

    Args:
        backbone: a CLIP from :func:`mpiqa.load_clip` (meant for mpiqa's pre-trained
            backbones, which learned these words; any CLIP works).
        crop, n_crops: preprocessing (see :class:`IQAModel`).
        extra_heads: more towers over the same stem (an ensemble; the score is the mean
            over the backbone's and theirs). Their stems are replaced by the backbone's.
        probe: a :class:`LinearProbe` of the stem's global statistics, averaged in with
            weight ``probe_share`` (the towers' mean gets the rest).

    Raises:
        ValueError: extra heads whose tower is not the backbone's architecture, or whose
            own stem holds other weights (an ensemble shares one stem); a probe on a
            backbone without a hybrid stem, or of another width; ``probe_share``
            outside [0, 1].
    """

    lower_better = False
    score_range = (0.0, 1.0)

    def __init__(
        self,
        backbone: CLIP,
        crop: CropMode = "center",
        n_crops: int = 5,
        extra_heads: Sequence[LevelHead] = (),
        probe: LinearProbe | None = None,
        probe_share: float = 0.5,
    ) -> None:
        # A probe with a detail view takes larger images; the towers see them resized.
        size = probe.input_size if probe is not None and probe.detail else backbone.image_size
        super().__init__(size, backbone.config.vision.patch_size, crop, n_crops)
        self.backbone = backbone.eval().requires_grad_(False)
        with torch.no_grad():
            text = level_text_features(self.backbone)
        # Not persistent: derived from the backbone, never saved.
        self.register_buffer("level_text", text, persistent=False)
        for head in extra_heads:
            if not isinstance(backbone.visual, VisionTransformer) or (
                head.visual.config != backbone.config.vision
            ):
                raise ValueError("an ensemble's towers must share the backbone's architecture")
            stem = backbone.visual.stem
            if head.visual.stem is not stem and not _same_tensors(head.visual.stem, stem):
                raise ValueError("an extra head's stem differs from the backbone's")
            head.visual.stem = stem  # one stem, run once
        self.extra_heads = nn.ModuleList(extra_heads).eval().requires_grad_(False)
        if probe is not None:
            vision = backbone.config.vision
            if not isinstance(backbone.visual, VisionTransformer) or vision.stem == "patch":
                raise ValueError("a linear probe needs a backbone with a convolutional stem")
            if probe.channels != vision.token_channels * probe.views:
                raise ValueError(
                    f"the probe reads {probe.channels} channels, the stem gives "
                    f"{vision.token_channels} per view ({probe.views} views)"
                )
        if not 0.0 <= probe_share <= 1.0:
            raise ValueError(f"probe_share must be in [0, 1], got {probe_share}")
        self.probe = probe.eval() if probe is not None else None
        self.probe_share = probe_share

    def _tower_view(self, pixels: torch.Tensor) -> torch.Tensor:
        """The input as the towers take it: resized by backbone size / input size with
        :func:`resize_like_pillow`, because the towers were trained on Pillow's resize (a
        plain float resize moved their scores by 0.018 on average, SRCC -0.003)."""
        scale = self.backbone.image_size / self.image_size
        if scale == 1:
            return pixels
        height, width = (int(d) for d in pixels.shape[-2:])  # ints when traced too
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        if pixels.requires_grad and torch.is_grad_enabled():
            # differentiable_score: the 8-bit view's values, the float resize's gradient
            # (resizing commutes with the normalisation, so the two differ by rounding)
            with torch.no_grad():
                exact = self._tower_view(pixels.detach())
            smooth = F.interpolate(pixels, size=size, mode="bicubic", antialias=True)
            return smooth + (exact - smooth).detach()
        mean, std = (
            torch.tensor(v, device=pixels.device).view(1, 3, 1, 1)
            for v in STATS[self.preprocess_options.get("stats", "clip")]
        )
        to_8bit = (std * 255, mean * 255 + 0.5)  # +0.5: the uint8 cast below truncates
        to_model = (1 / (255 * std), mean / std)
        # On a CPU, a few images at a time: the passes below then stay in cache (a batch of
        # 32 at 512 x 512 is 100 MB of floats); 8 at a time took the view from 3.2 to 2.5-2.7
        # ms per image on 2 cores (batches of 32, interleaved), the same numbers. Not when
        # traced or exported: the loop would be unrolled for the example's batch size.
        chunked = pixels.device.type == "cpu" and not is_traced()
        views = []
        for part in pixels.split(_CPU_VIEW_CHUNK) if chunked else (pixels,):
            # back to 8-bit values (they are 8-bit values normalised, so this is exact)
            x = torch.addcmul(to_8bit[1], part.float(), to_8bit[0]).clamp_(0, 255)
            # torch's 8-bit kernel on a CPU; in an ONNX file or on a GPU, its values from
            # plain ops, so that these score as the CPU does (ONNX's resize rounds otherwise)
            native = x.device.type == "cpu" and not torch.onnx.is_in_onnx_export()
            if native:
                x = x.to(torch.uint8, memory_format=torch.channels_last)
            else:
                x = x.floor_()
            x = resize_like_pillow(x, size, eight_bit=native)
            # contiguous: the stem ran 40 % slower on the channels-last layout
            x = x.to(torch.float32, memory_format=torch.contiguous_format)
            views.append(x.mul_(to_model[0]).sub_(to_model[1]).to(pixels.dtype))
        return torch.cat(views) if len(views) > 1 else views[0]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if not len(self.extra_heads) and self.probe is None:
            return _readout(
                self.backbone.encode_image(pixels), self.level_text, self.backbone.logit_scale
            )
        visual = self.backbone.visual
        features = visual.stem_features(self._tower_view(pixels))
        image = visual.pool(visual.transformer(visual.embed_features(features), keep=1))
        scores = [_readout(image, self.level_text, self.backbone.logit_scale)]
        scores += [head(features) for head in self.extra_heads]
        towers = torch.stack(scores).mean(0)
        if self.probe is None:
            return towers
        stats = visual.global_statistics(features)
        if self.probe.detail:
            height, width = (int(d) for d in pixels.shape[-2:])  # ints when traced too
            side = min(self.probe.detail, height, width)
            top, left = round((height - side) / 2), round((width - side) / 2)
            crop = pixels[..., top : top + side, left : left + side]
            stats = torch.cat([stats, visual.global_statistics(visual.stem_features(crop))], 1)
        probe = self.probe(stats)
        return (1 - self.probe_share) * towers + self.probe_share * probe


HEADS_FORMAT = "mpiqa-level-heads/1"


def load_level_heads(path: str | Path, backbone: CLIP) -> list[LevelHead]:
    """The extra ensemble members stored in ``path`` (tensors ``{i}.visual.*`` without the
    stem, ``{i}.level_text``, ``{i}.logit_scale``), built on ``backbone``'s architecture.

    Raises:
        CheckpointError: unreadable, of another format, or tensors that do not fit
            (naming the file).
    """
    path = Path(path)
    tensors = _read_tagged(path, HEADS_FORMAT, "heads")
    config = backbone.config
    heads = []
    for index in sorted({k.split(".", 1)[0] for k in tensors}, key=int):
        prefix = f"{index}."
        visual = {
            k[len(prefix) + len("visual.") :]: v
            for k, v in tensors.items()
            if k.startswith(prefix + "visual.")
        }
        tower = VisionTransformer(config.vision, config.embed_dim, config.act)
        tower.stem = backbone.visual.stem
        result = tower.load_state_dict(visual, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("stem.")]
        try:
            level_text, scale = tensors[prefix + "level_text"], tensors[prefix + "logit_scale"]
        except KeyError as err:
            raise CheckpointError(f"{path}: head {index} lacks {err.args[0]}") from None
        if missing or result.unexpected_keys or level_text.shape != (5, config.embed_dim):
            raise CheckpointError(
                f"{path}: head {index} does not fit {config.name or 'the backbone'}: missing "
                f"{missing[:3]}, unexpected {result.unexpected_keys[:3]}"
            )
        heads.append(LevelHead(tower.float(), level_text.float(), scale.float()))
    if not heads:
        raise CheckpointError(f"{path}: holds no heads")
    return heads
