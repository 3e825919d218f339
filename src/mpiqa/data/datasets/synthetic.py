"""Adapters for datasets of synthetically distorted reference images: TID2013,
KADID-10k, CSIQ, LIVE. Records carry the reference (``content``), distortion type and
level, so that splits keep each reference on one side."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from mpiqa.data.datasets.authentic import _mat_vector
from mpiqa.data.datasets.base import (
    DatasetFormatError,
    find_dir,
    find_file,
    label_key,
    parse_float,
    register_dataset,
    resolve_images,
)
from mpiqa.data.records import IQADataset, Record, normalise
from mpiqa.data.xlsx import header_and_rows, read_xlsx

TID2013_DISTORTIONS = (
    "additive gaussian noise", "additive noise in color components", "spatially correlated noise",
    "masked noise", "high frequency noise", "impulse noise", "quantization noise", "gaussian blur",
    "image denoising", "jpeg compression", "jpeg2000 compression", "jpeg transmission errors",
    "jpeg2000 transmission errors", "non eccentricity pattern noise",
    "local block-wise distortions", "mean shift", "contrast change", "change of color saturation",
    "multiplicative gaussian noise", "comfort noise", "lossy compression of noisy images",
    "color quantization with dither", "chromatic aberrations", "sparse sampling and reconstruction",
)  # fmt: skip

KADID10K_DISTORTIONS = (
    "gaussian blur", "lens blur", "motion blur", "color diffusion", "color shift",
    "color quantization", "color saturation 1", "color saturation 2", "jpeg2000", "jpeg",
    "white noise", "white noise in color component", "impulse noise", "multiplicative noise",
    "denoise", "brighten", "darken", "mean shift", "jitter", "non-eccentricity patch",
    "pixelate", "quantization", "color block", "high sharpen", "contrast change",
)  # fmt: skip

_TID_NAME = re.compile(r"^i(\d\d)_(\d\d)_(\d)\.bmp$", re.IGNORECASE)
_KADID_NAME = re.compile(r"^I(\d\d)_(\d\d)_(\d\d)\.png$", re.IGNORECASE)


def _make(key, path, raw, scale, higher_better, **fields) -> Record:
    return Record(key, path, raw, normalise(raw, scale, higher_better), **fields)


def _named_records(
    root, folder, label, entries, scale, distortions, dataset, check_images
) -> list[Record]:
    """Records of datasets whose file names encode (reference, type, level) as the three
    groups of ``match``; entries: (name, raw score, match)."""
    paths = resolve_images(folder, [e[0] for e in entries], dataset, label, check_images)
    return [
        _make(
            label_key(root, folder, name),
            path,
            raw,
            scale,
            True,
            content=f"I{m.group(1)}",
            distortion=distortions[int(m.group(2)) - 1],
            level=int(m.group(3)),
        )  # fmt: skip
        for (name, raw, m), path in zip(entries, paths, strict=True)
    ]


@register_dataset(
    "tid2013",
    "TID2013 (Ponomarenko et al. 2015): 3,000 images, 25 references, 24 distortions x 5 levels, MOS 0-9",
)
def load_tid2013(root: Path, check_images: bool = True) -> IQADataset:
    """Reads ``mos_with_names.txt`` (lines ``MOS name``, CRLF); images in
    ``distorted_images/``. Upper-case names in the label file are matched to the
    lower-case files."""
    label = find_file(root, ["mos_with_names.txt"], "TID2013")
    entries = []
    for line, text in enumerate(label.read_text(encoding="latin-1").splitlines(), start=1):
        if not text.strip():
            continue
        parts = text.split()
        if len(parts) != 2:
            raise DatasetFormatError(f"{label}:{line}: expected 'MOS name', got {text!r}")
        match = _TID_NAME.match(parts[1])
        if not match:
            raise DatasetFormatError(
                f"{label}:{line}: {parts[1]!r} is not a TID2013 name iRR_DD_L.bmp"
            )
        entries.append((parts[1], parse_float(parts[0], f"{label}:{line}", "MOS"), match))
    folder = find_dir(root, ["distorted_images"], "TID2013", check_images)
    records = _named_records(
        root, folder, label, entries, (0.0, 9.0), TID2013_DISTORTIONS, "TID2013", check_images
    )
    return IQADataset("tid2013", root, records, (0.0, 9.0), True, True, TID2013_DISTORTIONS)


@register_dataset(
    "kadid10k",
    "KADID-10k (Lin et al. 2019): 10,125 images, 81 references, 25 distortions x 5 levels, DMOS 1-5 (higher = better)",
)
def load_kadid10k(root: Path, check_images: bool = True) -> IQADataset:
    """Reads ``dmos.csv`` (columns ``dist_img,ref_img,dmos,var``; despite its name the
    ``dmos`` column is higher = better, on 1-5); images in ``images/``."""
    label = find_file(root, ["dmos.csv"], "KADID-10k")
    entries = []
    with open(label, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"dist_img", "ref_img", "dmos"} <= set(reader.fieldnames or []):
            raise DatasetFormatError(f"{label}:1: expected columns dist_img, ref_img, dmos")
        for line, row in enumerate(reader, start=2):
            match = _KADID_NAME.match(row["dist_img"])
            if not match:
                raise DatasetFormatError(
                    f"{label}:{line}: {row['dist_img']!r} is not a KADID name IRR_DD_LL.png"
                )
            entries.append(
                (row["dist_img"], parse_float(row["dmos"], f"{label}:{line}", "dmos"), match)
            )
    folder = find_dir(root, ["images"], "KADID-10k", check_images)
    records = _named_records(
        root, folder, label, entries, (1.0, 5.0), KADID10K_DISTORTIONS, "KADID-10k", check_images
    )
    return IQADataset("kadid10k", root, records, (1.0, 5.0), True, True, KADID10K_DISTORTIONS)


# CSIQ names its files <ref>.<TOKEN>.<level>.png inside dst_imgs/<folder>/.
_CSIQ_TYPES = {  # token in file names -> (folder, distortion name)
    "AWGN": ("awgn", "additive white gaussian noise"),
    "BLUR": ("blur", "gaussian blur"),
    "contrast": ("contrast", "contrast change"),
    "fnoise": ("fnoise", "additive pink gaussian noise"),
    "JPEG": ("jpeg", "jpeg compression"),
    "jpeg2000": ("jpeg2000", "jpeg2000 compression"),
}
# dst_type values of the official spreadsheet -> file-name token
_CSIQ_SHEET_TYPES = {"noise": "AWGN", "awgn": "AWGN", "blur": "BLUR", "contrast": "contrast",
                     "fnoise": "fnoise", "jpeg": "JPEG", "jpeg 2000": "jpeg2000", "jpeg2000": "jpeg2000"}  # fmt: skip


def _csiq_rows(label: Path) -> list[tuple[str, str, int, float, int]]:
    """(ref, token, level, dmos, line) from either label format."""
    rows = []
    if label.suffix.lower() == ".xlsx":
        header_line, cells, body = header_and_rows(read_xlsx(label))
        header = [h.strip().lower() for h in cells]
        needed = ["image", "dst_type", "dst_lev", "dmos"]
        if not set(needed) <= set(header):
            raise DatasetFormatError(
                f"{label}:{header_line}: expected columns {needed}, got {cells}"
            )
        col = {n: header.index(n) for n in needed}
        for line, row in body:
            if len(row) <= max(col.values()) or not row[col["image"]].strip():
                continue
            kind = row[col["dst_type"]].strip().lower()
            if kind not in _CSIQ_SHEET_TYPES:
                raise DatasetFormatError(f"{label}:{line}: unknown dst_type {kind!r}")
            ref = row[col["image"]].strip().removesuffix(".0")
            level = int(parse_float(row[col["dst_lev"]], f"{label}:{line}", "dst_lev"))
            dmos = parse_float(row[col["dmos"]], f"{label}:{line}", "dmos")
            rows.append((ref, _CSIQ_SHEET_TYPES[kind], level, dmos, line))
        return rows
    for line, text in enumerate(label.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        parts = text.split()
        name_parts = parts[0].split(".") if len(parts) == 2 else []
        if len(name_parts) != 4 or name_parts[1] not in _CSIQ_TYPES:
            raise DatasetFormatError(
                f"{label}:{line}: expected '<ref>.<TYPE>.<level>.png <dmos>', got {text!r}"
            )
        dmos = parse_float(parts[1], f"{label}:{line}", "DMOS")
        rows.append((name_parts[0], name_parts[1], int(name_parts[2]), dmos, line))
    return rows


@register_dataset(
    "csiq",
    "CSIQ (Larson & Chandler 2010): 866 images, 30 references, 6 distortions, DMOS 0-1 (lower = better)",
)
def load_csiq(root: Path, check_images: bool = True) -> IQADataset:
    """Reads the official ``csiq.DMOS.xlsx`` (first sheet, columns ``image``,
    ``dst_type``, ``dst_lev``, ``dmos``; written from its documented layout, no copy was
    available to test against) or the widely used derived ``csiq_label.txt`` (lines
    ``<ref>.<TYPE>.<level>.png <dmos>``); images in ``dst_imgs/<type>/``."""
    label = find_file(root, ["csiq.DMOS.xlsx", "csiq_label.txt"], "CSIQ")
    rows = _csiq_rows(label)
    folder = find_dir(root, ["dst_imgs", "dst_imgs_all"], "CSIQ", check_images)
    names = [f"{_CSIQ_TYPES[t][0]}/{ref}.{t}.{lev}.png" for ref, t, lev, _, _ in rows]
    paths = resolve_images(folder, names, "CSIQ", label, check_images)
    records = [
        _make(
            label_key(root, folder, name),
            path,
            dmos,
            (0.0, 1.0),
            False,
            content=ref,
            distortion=_CSIQ_TYPES[t][1],
            level=lev,
        )
        for (ref, t, lev, dmos, _), name, path in zip(rows, names, paths, strict=True)
    ]
    distortions = tuple(name for _, name in _CSIQ_TYPES.values())
    return IQADataset("csiq", root, records, (0.0, 1.0), False, True, distortions)


_LIVE_FOLDERS = (("jp2k", 227, "jpeg2000 compression"), ("jpeg", 233, "jpeg compression"),
                 ("wn", 174, "white noise"), ("gblur", 174, "gaussian blur"),
                 ("fastfading", 174, "fast fading rayleigh channel"))  # fmt: skip


@register_dataset(
    "live",
    "LIVE IQA release 2 (Sheikh et al. 2006): 779 distorted images, 29 references, 5 distortions, DMOS",
)
def load_live(root: Path, check_images: bool = True) -> IQADataset:
    """Reads ``dmos_realigned.mat`` (``dmos_new``, ``orgs``; or the older ``dmos.mat``
    with ``dmos``) and ``refnames_all.mat`` (``refnames_all``); the 982 entries run over
    ``jp2k/`` (227), ``jpeg/`` (233), ``wn/``, ``gblur/``, ``fastfading/`` (174 each) as
    ``img<i>.bmp``. Reference copies (``orgs == 1``) are left out. DMOS is normalised by
    the min and max over the distorted images (realigned DMOS has no fixed range)."""
    label = find_file(root, ["dmos_realigned.mat", "dmos.mat"], "LIVE")
    dmos = _mat_vector(label, "dmos_new" if label.name == "dmos_realigned.mat" else "dmos").astype(
        float
    )
    orgs = _mat_vector(label, "orgs").astype(int)
    refs_file = find_file(root, ["refnames_all.mat"], "LIVE")
    refs = [str(np.asarray(r).reshape(-1)[0]) for r in _mat_vector(refs_file, "refnames_all")]
    expected = sum(n for _, n, _ in _LIVE_FOLDERS)
    if not len(dmos) == len(orgs) == len(refs) == expected:
        raise DatasetFormatError(
            f"{label}: expected {expected} entries in dmos, orgs and refnames_all, "
            f"got {len(dmos)}, {len(orgs)}, {len(refs)}"
        )
    names, kinds = [], []
    for folder, count, kind in _LIVE_FOLDERS:
        names += [f"{folder}/img{i}.bmp" for i in range(1, count + 1)]
        kinds += [kind] * count
    keep = [i for i in range(expected) if orgs[i] == 0]
    scale = (float(dmos[keep].min()), float(dmos[keep].max()))
    paths = resolve_images(root, [names[i] for i in keep], "LIVE", label, check_images)
    records = [
        _make(
            names[i],
            path,
            float(dmos[i]),
            scale,
            False,
            content=Path(refs[i]).stem,
            distortion=kinds[i],
        )
        for i, path in zip(keep, paths, strict=True)
    ]
    return IQADataset(
        "live", root, records, scale, False, True, tuple(k for _, _, k in _LIVE_FOLDERS)
    )
