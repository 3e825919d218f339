"""Every kind of bad or unusual image input gives RGB or one clear error naming the file."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpiqa.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image, undecodable


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height pixels (a decompression bomb's shape)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _rgb(size=(40, 30), seed=0):
    return Image.fromarray(
        np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    )


@pytest.mark.parametrize(
    "mode, saver",
    [
        ("CMYK", lambda im, p: im.convert("CMYK").save(p.with_suffix(".jpg"))),
        ("L", lambda im, p: im.convert("L").save(p.with_suffix(".png"))),
        ("P", lambda im, p: im.convert("P").save(p.with_suffix(".gif"))),
        ("RGBA", lambda im, p: im.convert("RGBA").save(p.with_suffix(".png"))),
        ("LA", lambda im, p: im.convert("LA").save(p.with_suffix(".png"))),
        ("1", lambda im, p: im.convert("1").save(p.with_suffix(".bmp"))),
    ],
)
def test_modes_become_rgb(tmp_path, mode, saver):
    saver(_rgb(), tmp_path / "img")
    path = next(tmp_path.iterdir())
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (40, 30)


def test_16_bit_greyscale_is_rescaled_not_clipped(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 8).reshape(8, 64)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    pixels = np.asarray(load_image(tmp_path / "deep.png"))[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255
    assert np.abs(pixels.astype(float) - ramp / 257.0).max() <= 0.5 + 1e-9


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (60, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    upright = load_image(tmp_path / "rotated.jpg")
    assert upright.size == (20, 60)
    top = np.asarray(upright)[:5].mean(axis=(0, 1))
    assert top[0] > 200 and top[1] < 80  # the red strip is now on top


def test_one_pixel_and_unicode_paths(tmp_path):
    folder = tmp_path / "dossier été 写真"
    folder.mkdir()
    Image.new("RGB", (1, 1), (10, 20, 30)).save(folder / "tiny image (1).png")
    assert load_image(folder / "tiny image (1).png").getpixel((0, 0)) == (10, 20, 30)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.jpg", b"", "empty file"),
        ("notes.txt", b"just some text, not pixels\n", "not an image format"),
        (
            "garbage.png",
            b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
            "corrupt or truncated|not an image",
        ),
    ],
)
def test_bad_files(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason) as info:
        load_image(tmp_path / name)
    assert str(info.value).startswith(str(tmp_path / name))


def test_truncated_jpeg(tmp_path):
    _rgb((200, 200)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="corrupt or truncated") as info:
        load_image(tmp_path / "cut.jpg")
    assert info.value.path == str(tmp_path / "cut.jpg")


def test_undecodable_names_each_bad_file_with_its_reason(tmp_path):
    _rgb((400, 300)).save(tmp_path / "good.jpg", quality=90)
    _rgb((40, 30)).save(tmp_path / "good.png")
    data = (tmp_path / "good.jpg").read_bytes()
    # cut near the end: the check decodes JPEGs at 1/8 scale, which must still read it all
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 9 // 10])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not pixels")
    paths = [tmp_path / n for n in ("text.jpg", "good.jpg", "cut.jpg", "gone.png", "good.png")]
    paths.append(tmp_path / "empty.png")
    bad = undecodable(paths, workers=2)
    assert list(bad) == [
        str(tmp_path / n) for n in ("text.jpg", "cut.jpg", "gone.png", "empty.png")
    ]
    assert "not an image format" in bad[str(tmp_path / "text.jpg")]
    assert "truncated" in bad[str(tmp_path / "cut.jpg")]
    assert "no such file" in bad[str(tmp_path / "gone.png")]
    assert "empty file" in bad[str(tmp_path / "empty.png")]
    assert undecodable(paths[1:2] + paths[4:5]) == {}


def test_pillows_limit_is_put_back_when_decodes_overlap(monkeypatch):
    from mpiqa.data.images import _pillow_limit

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    first, second = _pillow_limit(5000), _pillow_limit(None)
    first.__enter__()
    assert Image.MAX_IMAGE_PIXELS == 5000
    second.__enter__()  # another thread: no limit while both decode
    assert Image.MAX_IMAGE_PIXELS is None
    first.__exit__(None, None, None)
    assert Image.MAX_IMAGE_PIXELS is None  # the other one still decodes
    second.__exit__(None, None, None)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    limit = rf"10000000000 pixels is over the limit of {DEFAULT_MAX_PIXELS} .*raise --max-pixels"
    with pytest.raises(ImageDecodeError, match=limit):
        load_image(tmp_path / "bomb.png")
    # checked for a full-size decode, Pillow refuses it at open, before our check; the
    # message is ours all the same
    limit = rf"over the limit of {DEFAULT_MAX_PIXELS} pixels .*raise --max-pixels"
    with pytest.raises(ImageDecodeError, match=limit):
        load_image(tmp_path / "bomb.png", limit_full_size=True)
    _rgb((100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageDecodeError, match="over the limit of 5000"):
        load_image(tmp_path / "big.png", max_pixels=5000)
    assert load_image(tmp_path / "big.png", max_pixels=None).size == (100, 100)


def test_max_pixels_above_pillows_own_limit_is_honoured(tmp_path, monkeypatch):
    # Pillow refuses anything over 2 x its MAX_IMAGE_PIXELS (179 Mpx by default) on its
    # own; a larger --max-pixels must still let such an image through (scaled down here).
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    _rgb((100, 100)).save(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png", max_pixels=20_000).size == (100, 100)
    assert load_image(tmp_path / "big.png", max_pixels=None).size == (100, 100)
    with pytest.raises(ImageDecodeError, match="over the limit of 5000"):
        load_image(tmp_path / "big.png", max_pixels=5000)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored


def test_a_jpeg_decoded_reduced_counts_at_its_reduced_size(tmp_path, monkeypatch):
    """A 100-200 Mpx camera photo is over Pillow's limit, but scoring decodes it at 1/8:
    what it costs, and what the limit counts. A PNG (no reduced decoding) still counts
    whole, and so does the check for a later full-size decode."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # Pillow's own: refuses > 200k
    jpg, png, limit = tmp_path / "a.jpg", tmp_path / "a.png", 1_000_000
    _rgb((1600, 1200)).save(jpg, quality=90)
    _rgb((1600, 1200)).save(png)
    assert load_image(jpg, max_pixels=limit, min_side=300).size == (400, 300)
    assert load_image(jpg, max_pixels=limit, draft=(300, 300)).size == (400, 300)
    too_large = "1600x1200 = 1920000 pixels is over the limit of 1000000"
    for path, kwargs in [
        (jpg, {}),  # decoded whole
        (png, {"min_side": 300}),
        (jpg, {"draft": (1, 1), "limit_full_size": True}),
    ]:
        with pytest.raises(ImageDecodeError, match=too_large):
            load_image(path, max_pixels=limit, **kwargs)
    assert too_large in undecodable([jpg], max_pixels=limit)[str(jpg)]
    reduced_too_large = "400x300 = 120000 pixels is over the limit of 100000"
    with pytest.raises(ImageDecodeError, match=reduced_too_large):
        load_image(jpg, max_pixels=100_000, min_side=300)
    assert Image.MAX_IMAGE_PIXELS == 100_000  # restored


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageDecodeError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        load_image(tmp_path)


def test_draft_decodes_jpegs_smaller_but_never_below_the_asked_size(tmp_path):
    Image.new("RGB", (800, 600), (10, 200, 30)).save(tmp_path / "a.jpg")
    Image.new("RGB", (800, 600), (10, 200, 30)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.jpg").size == (800, 600)
    assert load_image(tmp_path / "a.jpg", draft=(150, 150)).size == (200, 150)  # 1/4 scale
    assert load_image(tmp_path / "a.png", draft=(150, 150)).size == (800, 600)  # not a JPEG


def test_min_side_reduces_jpeg_decoding_only_when_the_shorter_side_allows(tmp_path):
    Image.new("RGB", (800, 600), (10, 200, 30)).save(tmp_path / "a.jpg")
    assert load_image(tmp_path / "a.jpg", min_side=224).size == (400, 300)  # 1/2: 300 >= 224
    assert load_image(tmp_path / "a.jpg", min_side=100).size == (200, 150)  # 1/4
    assert load_image(tmp_path / "a.jpg", min_side=301).size == (800, 600)  # 1/2 would be short
    Image.new("RGB", (800, 600), (10, 200, 30)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", min_side=100).size == (800, 600)


HEIC = Path(__file__).parents[1] / "fixtures" / "gradient.heic"  # see tests/fixtures/README.md


def test_heic_photos_decode_with_pi_heif(tmp_path):
    pytest.importorskip("pi_heif")
    from mpiqa.data.files import discover_images
    from mpiqa.data.images import IMAGE_EXTENSIONS, codec_hint

    image = load_image(HEIC)
    y, x = np.mgrid[0:48, 0:64]
    made = np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.uint8)
    made[16:32, 20:44] = [230, 40, 40]
    assert image.mode == "RGB" and image.size == (64, 48)
    assert np.abs(np.asarray(image, dtype=float) - made).mean() < 2  # lossy, but these pixels
    assert {".heic", ".heif"} <= IMAGE_EXTENSIONS and codec_hint([HEIC]) is None
    (tmp_path / "IMG_0001.HEIC").write_bytes(HEIC.read_bytes())
    assert discover_images([str(tmp_path)]).files == [str(tmp_path / "IMG_0001.HEIC")]


def test_without_a_heif_reader_the_error_says_what_to_install(tmp_path, monkeypatch):
    import mpiqa.data.images as images

    monkeypatch.setattr(images, "HEIF_READABLE", False)
    (tmp_path / "IMG_0001.heic").write_bytes(b"\0\0\0\x18ftypheic" + bytes(40))
    with pytest.raises(ImageDecodeError, match=r"IMG_0001\.heic: not an image .*mpiqa\[heif\]"):
        load_image(tmp_path / "IMG_0001.heic")
    assert images.codec_hint(["a.jpg", "b.HEIF"]) == images.HEIF_HINT
    assert images.codec_hint(["a.jpg"]) is None
