"""Adapters for datasets of authentically distorted photos: BIQ2021, KonIQ-10k, LIVE
Challenge, SPAQ. Each reads the label file exactly as the dataset's download ships it."""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

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


def _records(root, folder, rows, scale, higher_better, label, dataset, check_images, **fields):
    """rows: (name, raw score, group) -> Records, images resolved under ``folder``."""
    paths = resolve_images(folder, [r[0] for r in rows], dataset, label, check_images)
    records = []
    for (name, raw, group), path in zip(rows, paths, strict=True):
        key = label_key(root, folder, name)
        records.append(
            Record(key, path, raw, normalise(raw, scale, higher_better), group=group, **fields)
        )
    return records


@register_dataset(
    "biq2021", "BIQ2021 (Ahmed et al. 2022): 12,000 images, MOS in [0,1], official train/test CSVs"
)
def load_biq2021(root: Path, check_images: bool = True) -> IQADataset:
    """Reads ``Train (Images and MOS).csv`` and ``Test (Images and MOS).csv`` (either may
    be absent, not both) and ``Images/``. ``Record.group`` is "train" or "test", the
    official split, ``Record.source`` the file name's collection prefix (``ss01``,
    ``ss02``, ``ss03``: the database's three sources, whose MOS levels differ). Names match
    files case-insensitively (``.jpg`` vs ``.JPG``)."""
    files = {"train": "Train (Images and MOS).csv", "test": "Test (Images and MOS).csv"}
    present = {g: root / f for g, f in files.items() if (root / f).is_file()}
    if not present:
        find_file(root, list(files.values()), "BIQ2021")  # raises, naming both
    records = []
    for group, label in present.items():
        rows = []
        with open(label, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            if [h.strip().lower() for h in header[:2]] != ["image name", "mos"]:
                raise DatasetFormatError(
                    f"{label}:1: expected the header 'Image Name,MOS', got {header}"
                )
            for line, row in enumerate(reader, start=2):
                if not row or not row[0].strip():
                    continue
                if len(row) < 2:
                    raise DatasetFormatError(f"{label}:{line}: expected 'name,MOS', got {row}")
                rows.append((row[0].strip(), parse_float(row[1], f"{label}:{line}", "MOS"), group))
        folder = find_dir(root, ["Images", "images"], "BIQ2021", check_images)
        records += _records(root, folder, rows, (0.0, 1.0), True, label, "BIQ2021", check_images)
    records = [replace(r, source=_biq2021_source(r.path.name)) for r in records]
    return IQADataset("biq2021", root, records, scale=(0.0, 1.0))


def _biq2021_source(name: str) -> str | None:
    """BIQ2021's source from a file name such as ``ss03 (12).jpg``; None if it has none."""
    found = re.match(r"(ss\d+)\b", name, re.IGNORECASE)
    return found.group(1).lower() if found else None


@register_dataset(
    "koniq10k", "KonIQ-10k (Hosu et al. 2020): 10,073 in-the-wild images, MOS 1-100, official sets"
)
def load_koniq10k(
    root: Path, check_images: bool = True, resolution: str = "1024x768"
) -> IQADataset:
    """Reads ``koniq10k_scores_and_distributions.csv`` (score: ``MOS_zscore``, 1-100) or
    ``koniq10k_distributions_sets.csv`` (score: ``MOS``, 1-100; ``set`` = the official
    training / validation / test sets, kept in ``Record.group``). Images in
    ``<resolution>/`` or ``koniq10k_<resolution>/<resolution>/``."""
    label = find_file(
        root,
        ["koniq10k_scores_and_distributions.csv", "koniq10k_distributions_sets.csv"],
        "KonIQ-10k",
    )
    rows = []
    with open(label, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        column = "MOS_zscore" if "MOS_zscore" in (reader.fieldnames or []) else "MOS"
        if "image_name" not in (reader.fieldnames or []) or column not in reader.fieldnames:
            raise DatasetFormatError(f"{label}:1: expected columns image_name and {column}")
        for line, row in enumerate(reader, start=2):
            raw = parse_float(row[column], f"{label}:{line}", column)
            rows.append((row["image_name"], raw, row.get("set") or None))
    folder = find_dir(
        root,
        [resolution, f"koniq10k_{resolution}/{resolution}", "images"],
        "KonIQ-10k",
        check_images,
    )
    records = _records(root, folder, rows, (0.0, 100.0), True, label, "KonIQ-10k", check_images)
    return IQADataset("koniq10k", root, records, scale=(0.0, 100.0))


def _mat_vector(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        data = loadmat(path)
    except Exception as err:  # scipy raises several types for foreign files
        raise DatasetFormatError(f"{path}: not a readable MATLAB file ({err})") from None
    if key not in data:
        raise DatasetFormatError(f"{path}: has no variable {key!r}")
    return np.asarray(data[key]).reshape(-1)


@register_dataset("livec", "LIVE Challenge (Ghadiyaram & Bovik 2016): 1,162 photos, MOS 0-100")
def load_livec(root: Path, check_images: bool = True, include_training: bool = False) -> IQADataset:
    """Reads ``Data/AllImages_release.mat`` and ``Data/AllMOS_release.mat``; images in
    ``Images/`` (the 7 training images ``t1.bmp``..``t7.bmp`` in ``Images/trainingImages/``).
    The 7 training images are left out unless ``include_training``, as in the
    literature's 1,162-image protocol."""
    names_file = find_file(root, ["Data/AllImages_release.mat"], "LIVE Challenge")
    mos_file = find_file(root, ["Data/AllMOS_release.mat"], "LIVE Challenge")
    names = [
        str(np.asarray(n).reshape(-1)[0]) for n in _mat_vector(names_file, "AllImages_release")
    ]
    mos = _mat_vector(mos_file, "AllMOS_release").astype(float)
    if len(names) != len(mos):
        raise DatasetFormatError(
            f"{mos_file}: {len(mos)} scores for {len(names)} images in {names_file.name}"
        )
    rows = []
    for i, (name, score) in enumerate(zip(names, mos, strict=True)):
        is_training = i < 7 and name.lower().startswith("t")
        if is_training and not include_training:
            continue
        rows.append((f"trainingImages/{name}" if is_training else name, float(score), None))
    folder = find_dir(root, ["Images"], "LIVE Challenge", check_images)
    records = _records(
        root, folder, rows, (0.0, 100.0), True, names_file, "LIVE Challenge", check_images
    )
    return IQADataset("livec", root, records, scale=(0.0, 100.0))


@register_dataset("spaq", "SPAQ (Fang et al. 2020): 11,125 smartphone photos, MOS 0-100")
def load_spaq(root: Path, check_images: bool = True) -> IQADataset:
    """Reads ``Annotations/MOS and Image attribute scores.xlsx`` (columns ``Image name``,
    ``MOS``, then the attribute scores); images in ``TestImage/``. Written from the
    documented layout: no original spreadsheet was available to test against."""
    label = find_file(root, ["Annotations/MOS and Image attribute scores.xlsx"], "SPAQ")
    header_line, cells, body = header_and_rows(read_xlsx(label))
    header = [h.strip().lower() for h in cells]
    if "image name" not in header or "mos" not in header:
        raise DatasetFormatError(
            f"{label}:{header_line}: expected columns 'Image name' and 'MOS', got {cells}"
        )
    name_col, mos_col = header.index("image name"), header.index("mos")
    rows = [
        (row[name_col], parse_float(row[mos_col], f"{label}:{line}", "MOS"), None)
        for line, row in body
        if len(row) > max(name_col, mos_col) and row[name_col].strip()
    ]
    folder = find_dir(root, ["TestImage", "TestImage/TestImage"], "SPAQ", check_images)
    records = _records(root, folder, rows, (0.0, 100.0), True, label, "SPAQ", check_images)
    return IQADataset("spaq", root, records, scale=(0.0, 100.0))
