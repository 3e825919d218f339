"""Adapters for a user's own data: any CSV of scores, or an unlabelled folder."""

from __future__ import annotations

import csv
from pathlib import Path

from mpiqa.data.datasets.base import (
    DatasetFormatError,
    find_file,
    parse_float,
    register_dataset,
    resolve_images,
)
from mpiqa.data.files import discover_images
from mpiqa.data.records import IQADataset, Record, normalise


@register_dataset("csv", "any CSV of image paths and scores (columns chosen by options)")
def load_csv(
    root: Path,
    check_images: bool = True,
    csv_file: str = "labels.csv",
    path_column: str = "path",
    score_column: str = "score",
    image_dir: str = ".",
    lower_better: bool = False,
    scale: tuple[float, float] | None = None,
    content_column: str | None = None,
    delimiter: str = ",",
    encoding: str = "utf-8-sig",
    allow_outside_root: bool = False,
) -> IQADataset:
    """Reads ``root/csv_file``; image paths are relative to ``root/image_dir``.

    Args:
        scale: (low, high) of the scores; default: their min and max in the file.
        lower_better: the scores are DMOS-like.
        content_column: a column grouping images of one scene (kept on one side of splits).
        encoding: of the CSV file (UTF-8, with or without a byte-order mark, by default).
        allow_outside_root: accept absolute paths and ``..`` leading out of the image
            folder (refused by default: a label file must not read arbitrary files).

    Raises:
        DatasetFormatError: naming ``file:line``: a missing column, a short row, a score
            that is not a finite number, an image listed twice, a path outside the
            folder, or text that is not in ``encoding``.
    """
    label = find_file(root, [csv_file], "CSV dataset")
    rows = []
    seen: dict[str, int] = {}
    try:
        with open(label, newline="", encoding=encoding) as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            columns = reader.fieldnames or []
            for needed in filter(None, (path_column, score_column, content_column)):
                if needed not in columns:
                    raise DatasetFormatError(
                        f"{label}:1: no column {needed!r}; columns are {columns}"
                    )
            for row in reader:
                line = reader.line_num
                if any(row.get(c) is None for c in columns):
                    raise DatasetFormatError(
                        f"{label}:{line}: {sum(v is not None for v in row.values())} fields, "
                        f"the header has {len(columns)}"
                    )
                raw = parse_float(row[score_column], f"{label}:{line}", score_column)
                name = row[path_column]
                key = Path(name).as_posix()
                if key in seen:
                    raise DatasetFormatError(
                        f"{label}:{line}: {name!r} is listed again (first on line {seen[key]}); "
                        "each image must appear once"
                    )
                seen[key] = line
                rows.append((name, raw, row[content_column] if content_column else ""))
    except UnicodeDecodeError as err:
        raise DatasetFormatError(
            f"{label}: not {encoding} text (byte {err.start}: {err.reason}); save it as UTF-8 "
            "or give its encoding (--dataset-option encoding=latin-1)"
        ) from None
    if not rows:
        raise DatasetFormatError(f"{label}: no data rows")
    raws = [r[1] for r in rows]
    scale = tuple(float(v) for v in scale) if scale else (min(raws), max(raws))
    if len(scale) != 2 or scale[1] <= scale[0]:
        raise DatasetFormatError(
            f"{label}: score scale {scale} is empty; give it (--dataset-option scale=LOW,HIGH, "
            "or --scale LOW HIGH with finetune)"
        )
    folder = (root / image_dir).resolve()
    paths = resolve_images(
        folder, [r[0] for r in rows], "CSV dataset", label, check_images, allow_outside_root
    )
    records = [
        Record(
            Path(name).as_posix(),
            path,
            raw,
            normalise(raw, scale, not lower_better),
            content=content,
        )
        for (name, raw, content), path in zip(rows, paths, strict=True)
    ]
    return IQADataset("csv", root, records, scale, not lower_better)


@register_dataset("folder", "unlabelled images of a folder (recursive), for scoring")
def load_folder(root: Path, check_images: bool = True) -> IQADataset:
    found = discover_images([str(root)], recursive=True).warn_unreadable()
    records = [Record(Path(p).relative_to(root).as_posix(), Path(p)) for p in found.files]
    return IQADataset("folder", root, records)
