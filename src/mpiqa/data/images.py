"""Decode image files into RGB PIL images, with one clear error per bad file."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

logger = logging.getLogger(__name__)


HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
HEIF_HINT = "install pi-heif to read HEIC / HEIF photos: pip install 'mpiqa[heif]'"


def _register_heif() -> bool:
    """Let Pillow open HEIC / HEIF files (the iPhone's photo format) when the optional
    ``pi-heif`` is installed: libheif's decoder as a Pillow plugin, without the encoders
    (pillow-heif bundles x265, which is GPL). Called at import, so decoding worker
    processes have it too."""
    try:
        import pi_heif
    except ImportError:
        return False
    pi_heif.register_heif_opener()
    return True


HEIF_READABLE = _register_heif()


def codec_hint(names: Sequence[str | Path]) -> str | None:
    """What to install when some of ``names`` are HEIC / HEIF files and nothing here
    reads them; None otherwise."""
    if HEIF_READABLE or not any(Path(n).suffix.lower() in HEIF_EXTENSIONS for n in names):
        return None
    return HEIF_HINT


def _extensions() -> frozenset[str]:
    """The extensions a folder scan picks up: the formats every Pillow reads, and those of
    optional codecs this Pillow was built with (or pi-heif adds). A file named explicitly
    is tried whatever its name."""
    found = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp",
             ".gif", ".ppm", ".pgm", ".pnm"}  # fmt: skip
    for feature, names in (("avif", {".avif"}), ("jpg_2000", {".jp2", ".j2k", ".jpx"})):
        try:
            if features.check(feature):
                found |= names
        except ValueError:  # a Pillow too old to know the feature
            pass
    return frozenset(found | (HEIF_EXTENSIONS if HEIF_READABLE else set()))


IMAGE_EXTENSIONS = _extensions()
# Pillow's own guard against decompression bombs (about 89 megapixels).
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


class ImageDecodeError(ValueError):
    """An image file that cannot be scored. ``str()`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _high_bit_depth_to_8bit(image: Image.Image) -> Image.Image:
    """Pillow's convert("RGB") clips 16-bit and float images instead of rescaling them."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        peak = 1.0 if array.max(initial=0.0) <= 1.0 else 255.0
    else:  # I;16 variants, or I holding 16-bit data
        peak = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
    scaled = np.clip(np.rint(array * (255.0 / peak)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. Alpha is dropped (as CLIP's reference preprocessing does),
    16-bit and float data are rescaled to 8 bits."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _high_bit_depth_to_8bit(image)
    return image if image.mode == "RGB" else image.convert("RGB")


# Pillow's limit is one global: decodes in several threads (:func:`undecodable`) share it.
_LIMIT_LOCK = threading.Lock()
_limit_users = 0
_limit_saved: int | None = None


@contextlib.contextmanager
def _pillow_limit(max_pixels: int | None):
    """Pillow refuses images over twice its own ``MAX_IMAGE_PIXELS`` (179 Mpx) whatever
    we allow; while decoding, its limit follows ``max_pixels`` (checked here before any
    pixel is decoded), so ``--max-pixels`` means what it says. Thread-safe: while
    several decodes run, the most permissive of their limits holds (each has checked its
    own), and the last one out puts back the value found by the first one in."""
    global _limit_users, _limit_saved
    with _LIMIT_LOCK:
        if _limit_users == 0:
            _limit_saved = Image.MAX_IMAGE_PIXELS
        _limit_users += 1
        wanted = None if max_pixels is None else max(max_pixels, _limit_saved or 0)
        current = Image.MAX_IMAGE_PIXELS
        if _limit_users == 1 or (current is not None and (wanted is None or wanted > current)):
            Image.MAX_IMAGE_PIXELS = wanted
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _limit_users -= 1
            if _limit_users == 0:
                Image.MAX_IMAGE_PIXELS = _limit_saved


def load_image(
    path: str | Path,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
    min_side: int | None = None,
    *,
    limit_full_size: bool = False,
) -> Image.Image:
    """Decode ``path`` into an upright (EXIF-transposed) RGB image.

    Args:
        path: image file.
        max_pixels: refuse images that would decode to more pixels than this
            (decompression bombs), checked before any pixel is decoded; ``None`` for no
            limit. A JPEG decoded reduced (``draft``, ``min_side``) counts at its reduced
            size, which is what its decoding costs: a 100-200 Mpx camera photo scores
            under the default limit.
        draft: for JPEGs, let the decoder scale down by 1/2, 1/4 or 1/8 while decoding,
            keeping the image at least this large (width, height); far faster for
            thumbnails. Other formats decode at full size.
        min_side: for JPEGs, decode reduced by 1/2, 1/4 or 1/8 when the shorter side stays
            at least this long (scoring resizes to it anyway: decoding a 12 Mpx photo
            at 1/8 is several times faster). The result differs from a full decode
            resized alike by the decoder's own downscaling (see the README's Speed).
        limit_full_size: count the full size against ``max_pixels`` whatever the
            decoder reduces (a check for a later decode at full size).

    Raises:
        ImageDecodeError: missing, empty, unreadable, truncated or too large; its message
            names the file and the reason.
    """
    path = Path(path)
    if not path.is_file():
        if path.is_symlink() and not path.exists():
            reason = "a symbolic link to nothing (broken, or a loop)"
        else:
            reason = "no such file" if not path.exists() else "not a regular file"
        raise ImageDecodeError(path, reason)
    if path.stat().st_size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    try:
        # Our own limit applies below, on the size that will be decoded; Pillow's own
        # (on the full size, when the file is opened) would refuse a large JPEG that is
        # decoded reduced, and its warning would only repeat ours.
        pillow_limit = max_pixels if limit_full_size else None
        with warnings.catch_warnings(), _pillow_limit(pillow_limit):
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if draft is None and min_side is not None and 2 * min_side <= min(width, height):
                    scale = min_side / min(width, height)
                    draft = (math.ceil(width * scale), math.ceil(height * scale))
                if draft is not None:
                    image.draft("RGB", draft)  # JPEG only: image.size becomes the reduced size
                w, h = (width, height) if limit_full_size else image.size
                if max_pixels is not None and w * h > max_pixels:
                    raise ImageDecodeError(
                        path,
                        f"{w}x{h} = {w * h} pixels is over the limit of {max_pixels} (a "
                        "possible decompression bomb; raise --max-pixels to score it)",
                    )
                image.load()
                image = ImageOps.exif_transpose(image) or image
                return to_rgb(image)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        hint = codec_hint([path])
        reason = "not an image format Pillow can read" + (f" ({hint})" if hint else "")
        raise ImageDecodeError(path, reason) from None
    except Image.DecompressionBombError as err:
        # Pillow's own check, at twice the limit it was given: it fires before ours, so
        # say what ours would (the user's limit and how to raise it), then Pillow's words.
        raise ImageDecodeError(
            path,
            f"over the limit of {max_pixels} pixels (a possible decompression bomb; raise "
            f"--max-pixels to score it): {err}",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageDecodeError(path, f"corrupt or truncated image data ({err})") from None


class UndecodableImagesError(ValueError):
    """Images that must all decode before a job starts (a training run's split), and do
    not. ``str()`` names the first few and the count; ``failed`` maps each to its reason.

    Args:
        failed: ``{name: reason}``, the names as the user knows them (keys or paths).
        total: how many images were checked.
        what: the job's data, e.g. ``"koniq10k"`` or ``"the split"``.
        hint: what the user can do, in parentheses after the names.
    """

    def __init__(self, failed: dict[str, str], total: int, what: str, hint: str) -> None:
        self.failed = dict(failed)
        shown = ", ".join(list(failed)[:5]) + (" ..." if len(failed) > 5 else "")
        super().__init__(
            f"{what}: {len(failed)} of {total} images cannot be decoded: {shown} ({hint})"
        )


def undecodable(
    paths: Sequence[str | Path],
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
) -> dict[str, str]:
    """The files among ``paths`` that :func:`load_image` refuses, each with its reason.

    Every file is decoded once, JPEGs at 1/8 scale: the decoder still reads all of a
    JPEG's data, so a truncated or corrupt one fails as at full size, in a fraction of
    the time. Threads share the work (Pillow's decoders release the GIL).

    Args:
        paths: image files.
        max_pixels: as :func:`load_image` (a larger image is refused).
        workers: threads; default the CPU count, at most 8.

    Returns:
        ``{path: reason}`` in the order of ``paths``; empty when all decode.
    """

    def check(path: str | Path) -> str | None:
        try:
            # at 1/8, but limited as the full-size decode that follows will be
            load_image(path, max_pixels=max_pixels, draft=(1, 1), limit_full_size=True)
        except ImageDecodeError as err:
            return err.reason
        except OSError as err:  # a file that vanished or cannot be read
            return str(err)
        return None

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(check, paths))
    return {str(p): r for p, r in zip(paths, reasons, strict=True) if r is not None}


def require_decodable(
    paths: Sequence[str | Path],
    what: str,
    hint: str = "each named above; replace or remove them",
    names: Sequence[str] | None = None,
    check: Callable[[Sequence[str | Path]], dict[str, str]] = undecodable,
    log: bool = True,
) -> None:
    """Check before a job's work that all of ``paths`` decode (:func:`undecodable`),
    logging an error line per bad file (by its path).

    Args:
        names: what the error calls each path (e.g. a dataset's keys); default the paths.
        check: finds the bad files, as :func:`undecodable` (which processes sharing the
            work replace by their shares of it, gathered).
        log: log the check and each bad file (one process of several does).

    Raises:
        UndecodableImagesError: some do not; ``what`` names the job's data, ``failed``
            maps each bad one's name to its reason.
    """
    if log:
        logger.info("%s: checking that its %d images decode", what, len(paths))
    bad = check(paths)
    if not bad:
        return
    failed = {}
    for path, name in zip(paths, names if names is not None else paths, strict=True):
        if str(path) in bad:
            if log:
                logger.error("%s: %s", path, bad[str(path)])
            failed[str(name)] = bad[str(path)]
    raise UndecodableImagesError(failed, len(paths), what, hint)
