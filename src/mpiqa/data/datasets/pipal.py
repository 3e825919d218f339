"""PIPAL (Gu et al., ECCV 2020; the NTIRE 2021/2022 perceptual IQA challenges): reference
images restored and distorted by traditional and GAN-based algorithms, rated by Elo
scores from pairwise preferences. Only its public training part has labels."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from mpiqa.data.datasets.base import (
    DatasetFormatError,
    MissingImagesError,
    find_dir,
    parse_float,
    register_dataset,
)
from mpiqa.data.records import IQADataset, Record, normalise

# A0001_00_00.bmp: reference A0001, distortion group 00, type 00 within the group
_PIPAL_NAME = re.compile(r"^(A\d{4})_(\d\d)_(\d\d)\.(bmp|png)$", re.IGNORECASE)
_IMAGE_FOLDERS = re.compile(r"^(Distortion_\d+|Train_Dis|Train_Dist|Dist)$", re.IGNORECASE)


def _label_rows(folder: Path) -> list[tuple[str, float, re.Match, str]]:
    """(image name, Elo score, name match, file:line) from every ``*.txt`` in ``folder``
    (one file per reference, lines ``A0001_00_00.bmp,1467.5930``)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".txt")
    if not files:
        raise FileNotFoundError(f"PIPAL: no label files (*.txt) in {folder}")
    rows, seen = [], {}
    for label in files:
        try:
            text = label.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise DatasetFormatError(f"{label}: not a UTF-8 text file ({err})") from None
        for line, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not fields or not "".join(fields).strip():
                continue
            where = f"{label}:{line}"
            if len(fields) != 2:
                raise DatasetFormatError(f"{where}: expected 'name,elo', got {','.join(fields)!r}")
            name = fields[0].strip()
            match = _PIPAL_NAME.match(name)
            if not match:
                raise DatasetFormatError(f"{where}: {name!r} is not a PIPAL name A0001_GG_TT.bmp")
            if name in seen:
                raise DatasetFormatError(f"{where}: {name} is listed twice (first at {seen[name]})")
            seen[name] = where
            rows.append((name, parse_float(fields[1], where, "Elo score"), match, where))
    return rows


def _image_index(root: Path) -> dict[str, Path]:
    """Every image in the distorted-image folders (``Distortion_1`` ... ``Distortion_4``
    as the download unpacks, at the top or one level down, or a single ``Train_Dist``),
    by lower-cased name."""
    top = [p for p in root.iterdir() if p.is_dir()]
    below = [child for p in top for child in p.iterdir() if child.is_dir()]
    folders = [p for p in top + below if _IMAGE_FOLDERS.match(p.name)]
    index: dict[str, Path] = {}
    for folder in sorted(folders):
        for path in folder.iterdir():
            if path.is_file():
                index.setdefault(path.name.casefold(), path)
    return index


@register_dataset(
    "pipal",
    "PIPAL training part (Gu et al. 2020): 23,200 images of 200 references, 40 distortions "
    "incl. GAN restorations, Elo scores (higher = better)",
)
def load_pipal(root: Path, check_images: bool = True) -> IQADataset:
    """Reads the public training part as its download unpacks: ``Train_Label/*.txt`` (one
    file per reference, lines ``A0001_00_00.bmp,<Elo>``) and the images in
    ``Distortion_1`` ... ``Distortion_4`` (at ``root`` or one folder down).

    Each record's ``content`` is its reference (``A0001``), so splits keep a reference
    and all its distortions on one side; ``distortion`` is the name's group and type
    (``"00_03"``). Elo scores are normalised by the lowest and highest in the labels.
    """
    label_dir = find_dir(root, ["Train_Label", "Training_Label", "MOS_Scores_train"], "PIPAL")
    rows = _label_rows(label_dir)
    index = _image_index(root)  # also without checks: the records' paths come from it
    missing = [name for name, *_ in rows if check_images and name.casefold() not in index]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise MissingImagesError(
            f"PIPAL: {len(missing)} of {len(rows)} images listed in {label_dir.name}/ are not "
            f"in its Distortion_* folders under {root}: {shown} (in Python, "
            "check_images=False reads the labels alone)"
        )
    scores = [elo for _, elo, _, _ in rows]
    scale = (min(scores), max(scores))
    if scale[0] == scale[1]:
        raise DatasetFormatError(f"{label_dir}: every Elo score is {scale[0]}")
    records = []
    for name, elo, match, _ in rows:
        path = index.get(name.casefold(), root / "Distortion_1" / name)
        records.append(
            Record(  # the key is the name as labelled: unique, and the same unchecked
                name,
                path,
                elo,
                normalise(elo, scale, True),
                content=match.group(1).upper(),
                distortion=f"{match.group(2)}_{match.group(3)}",
            )  # fmt: skip
        )
    distortions = tuple(sorted({r.distortion for r in records}))
    return IQADataset("pipal", root, records, scale, True, True, distortions)
