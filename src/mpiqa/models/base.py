"""The interface every mpiqa quality model shares."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from mpiqa.data.images import load_image, to_rgb
from mpiqa.data.transforms import (
    CROP_MODES,
    CropMode,
    normalize_uint8,
    preprocess_pil,
    preprocess_tensor,
)

ImageInput = str | Path | Image.Image
ScoreInput = ImageInput | Sequence[ImageInput] | torch.Tensor


class IQAModel(nn.Module):
    """A no-reference quality model: ``forward`` maps normalised pixels to scores.

    Attributes:
        lower_better: whether a lower score means better quality.
        score_range: (low, high) bounds of the score.
        image_size: side of the square crops the model takes.
        patch_size: the input side must be a multiple of this in ``full`` mode.
        crop: ``center`` (CLIP's resize + centre crop), ``multi`` (mean over ``n_crops``
            native-resolution crops) or ``full`` (whole image, one at a time).
    """

    lower_better: bool = False
    score_range: tuple[float, float] = (0.0, 1.0)

    def __init__(
        self, image_size: int, patch_size: int = 1, crop: CropMode = "center", n_crops: int = 5
    ) -> None:
        super().__init__()
        if crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
        if n_crops < 1:
            raise ValueError(f"n_crops must be >= 1, got {n_crops}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.crop = crop
        self.n_crops = n_crops
        # how a trained model's images were prepared (resize, squash, stats; see
        # preprocess_pil): checkpoints record it, so scoring feeds what training fed
        self.preprocess_options: dict = {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def for_inference(self) -> IQAModel:
        """Make this model faster for scoring only, in place: convolutional stems get
        their BatchNorms folded into the convolutions (the same scores to float
        rounding). The state dict's names change, so do not train or save it after.
        Returns ``self``, in eval mode."""
        from mpiqa.backbones.efficientnet import EfficientNetLite

        self.eval()
        for module in self.modules():
            if isinstance(module, EfficientNetLite):
                module.fold_batchnorm_()  # idempotent
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """(N, 3, H, W) CLIP-normalised pixels -> (N,) scores."""
        raise NotImplementedError

    def _preprocess_kwargs(self) -> dict:
        return dict(
            size=self.image_size, mode=self.crop, n_crops=self.n_crops, patch_size=self.patch_size,
            **self.preprocess_options,
        )  # fmt: skip

    @property
    def decode_min_side(self) -> int | None:
        """The shortest side a JPEG may be decoded to (at 1/2, 1/4 or 1/8 scale) before
        preprocessing: twice the resize target in ``center`` mode, so that the exact
        bicubic resize still does the last 2x and more (the decoder's own downscaling
        aliases: decoding 512 px photos at 256 for a 224 target moved mpiqa-tiny's
        scores by 0.03 on average); ``None`` (full size) in ``multi`` and ``full``
        modes, which read native pixels."""
        if self.crop != "center":
            return None
        target = max(self.preprocess_options.get("resize") or self.image_size, self.image_size)
        return 2 * target

    def preprocessor(self, uint8: bool = False) -> Callable[[Image.Image], torch.Tensor]:
        """A picklable function RGB PIL image -> (K, 3, H, W) crops, for worker processes:
        normalised, or with ``uint8`` raw pixels for :meth:`normalize_crops` (a quarter of
        the bytes to send between processes and to the device)."""
        return functools.partial(preprocess_pil, uint8=uint8, **self._preprocess_kwargs())

    def normalize_crops(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 crops from ``preprocessor(uint8=True)`` -> the normalised crops the model
        takes, on the model's device (the same numbers as ``preprocessor()`` gives)."""
        stats = self.preprocess_options.get("stats", "clip")
        return normalize_uint8(pixels.to(self.device, non_blocking=True), stats)

    def preprocess(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """One image (PIL, or a (3, H, W) tensor in [0, 1]) -> (K, 3, H, W) crops."""
        if isinstance(image, torch.Tensor):
            return preprocess_tensor(image, **self._preprocess_kwargs())
        return self.preprocessor()(to_rgb(image))

    #: names of the extra per-image columns :meth:`describe_crops` gives (CSV columns)
    extra_columns: tuple[str, ...] = ()

    @torch.no_grad()
    def describe_crops(
        self, crops: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[dict[str, str]]]:
        """Scores, and per image the values of :attr:`extra_columns` (none here)."""
        return self.score_crops(crops), [{} for _ in crops]

    @torch.no_grad()
    def score_crops(self, crops: Sequence[torch.Tensor]) -> torch.Tensor:
        """Scores of preprocessed images, each given as its (K, 3, H, W) crops: the mean
        over an image's crops. Returns a (N,) float32 tensor on the CPU."""
        return self._mean_over_crops(crops).cpu()

    def _mean_over_crops(self, crops: Sequence[torch.Tensor]) -> torch.Tensor:
        if not crops:
            return torch.empty(0, device=self.device)
        if self.crop == "full":  # sizes differ from image to image
            return torch.stack([self(c.to(self.device)).float().mean() for c in crops])
        counts = [c.shape[0] for c in crops]
        flat = self(torch.cat(list(crops)).to(self.device)).float()
        return torch.stack([part.mean() for part in flat.split(counts)])

    def differentiable_score(self, pixels: torch.Tensor) -> torch.Tensor:
        """Scores that keep autograd's graph back to the pixels: quality as a training
        loss (``1 - score``, as these scores are higher-better) or gradients for
        adversarial tests, as pyiqa's ``as_loss`` metrics. The model's own weights stay
        frozen.

        Args:
            pixels: (N, 3, H, W) or (3, H, W) float tensor in [0, 1], on any device
                (moved to the model's), usually with ``requires_grad``.

        Returns:
            (N,) float32 tensor on the model's device: :meth:`score`'s values for the same
            tensor (to float rounding). Where the model rounds to 8 bits inside
            (mpiqa-small's resize for its towers), the gradient passes the rounding as
            if it were not there (a straight-through estimator).

        Raises:
            ValueError: as :meth:`score` for a tensor.
        """
        images = _check_pixels(pixels).to(self.device)
        return self._mean_over_crops([self.preprocess(image) for image in images])

    def _crop_batches(self, inputs: ScoreInput, batch_size: int):
        """Preprocessed crops of ``inputs``, ``batch_size`` images at a time."""
        if isinstance(inputs, torch.Tensor):
            images: list = list(_check_pixels(inputs))
        else:
            images = [inputs] if isinstance(inputs, (str, Path, Image.Image)) else list(inputs)
            for i, x in enumerate(images):  # checked up front, before any image is scored
                if not isinstance(x, (str, Path, Image.Image)):
                    raise TypeError(
                        f"inputs[{i}]: expected a file path or a PIL image, got "
                        f"{type(x).__module__}.{type(x).__qualname__} (for pixels, score() takes one "
                        "(N, 3, H, W) float tensor in [0, 1])"
                    )
                if isinstance(x, Image.Image) and not (x.width and x.height):
                    raise ValueError(f"inputs[{i}]: an image must have pixels, got size {x.size}")
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            loaded = [
                load_image(x, min_side=self.decode_min_side) if isinstance(x, (str, Path)) else x
                for x in chunk
            ]  # files decode as `mpiqa score` decodes them
            yield [self.preprocess(x) for x in loaded]

    def score(self, inputs: ScoreInput, batch_size: int = 32) -> torch.Tensor:
        """Quality scores, one per image.

        Args:
            inputs: a file path, a PIL image, a sequence of those, or a float tensor
                (N, 3, H, W) / (3, H, W) with values in [0, 1].
            batch_size: images per forward pass.

        Returns:
            (N,) float32 tensor, within :attr:`score_range`.

        Raises:
            ImageDecodeError: a file cannot be decoded (the message names it).
            ValueError: a tensor of the wrong shape or dtype, without pixels, or with
                values outside [0, 1] (NaN included).
            TypeError: an item of a sequence is neither a path nor a PIL image.
        """
        scores = [self.score_crops(crops) for crops in self._crop_batches(inputs, batch_size)]
        return torch.cat(scores) if scores else torch.empty(0)

    def describe(self, inputs: ScoreInput, batch_size: int = 32) -> list[dict[str, object]]:
        """Per image, ``{"score": float, **extras}``: the score and the values of
        :attr:`extra_columns` (for prompt models, the distortion class and scene the
        model was trained to tell apart), as ``mpiqa score`` prints them.

        Args and raises: as :meth:`score`.
        """
        rows: list[dict[str, object]] = []
        for crops in self._crop_batches(inputs, batch_size):
            scores, extras = self.describe_crops(crops)
            for score, extra in zip(scores.tolist(), extras, strict=True):
                wanted = {k: v for k, v in extra.items() if k in self.extra_columns}
                rows.append({"score": float(score), **wanted})
        return rows

    def __call__(self, *args, **kwargs):
        """``model("photo.jpg")``, ``model(["a.jpg", "b.png"])`` or ``model(pil_image)``
        score files and images, as pyiqa's metrics do (:meth:`score`); so does any list or
        tuple, an empty one included. A tensor keeps the module's meaning: (N, 3, H, W)
        *normalised* pixels through :meth:`forward` (use :meth:`score` for [0, 1] pixels)."""
        if args and _is_image_input(args[0]):
            return self.score(*args, **kwargs)
        return super().__call__(*args, **kwargs)


def _is_image_input(value) -> bool:
    # forward() takes one tensor, never a sequence: a sequence goes to score(), which
    # names an item of the wrong type
    return isinstance(value, (str, Path, Image.Image, list, tuple))


def _check_pixels(pixels: torch.Tensor) -> torch.Tensor:
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(
            f"expected a (N, 3, H, W) or (3, H, W) tensor, got shape {tuple(pixels.shape)}"
        )
    if not pixels.is_floating_point():
        raise ValueError(f"expected float pixels in [0, 1], got dtype {pixels.dtype}")
    if len(pixels) and not (pixels.shape[2] and pixels.shape[3]):
        raise ValueError(f"an image must have pixels, got shape {tuple(pixels.shape)}")
    # NaN compares false with both bounds, so it needs its own check
    if not torch.isfinite(pixels).all():
        raise ValueError("pixel values must be finite, got NaN or infinity")
    if pixels.numel() and (pixels.min() < 0 or pixels.max() > 1):
        low, high = pixels.min().item(), pixels.max().item()
        raise ValueError(f"pixel values must lie in [0, 1], got [{low:.3g}, {high:.3g}]")
    return pixels.float()
