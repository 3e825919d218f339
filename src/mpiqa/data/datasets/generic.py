"""Adapters for a user's own data: any CSV of scores, or an unlabelled folder."""

from __future__ import annotations

import csv
import re
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
from mpiqa.data.xlsx import header_and_rows, read_xlsx, sheet_names

_DELIMITERS = (",", ";", "\t", "|")
# names for separators that are awkward to type on a command line
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "semicolon": ";", "comma": ",", "pipe": "|"}
# spreadsheet formats read nowhere here (xlsx is, with the standard library alone)
_OTHER_SHEETS = {".xls": "legacy Excel (.xls)", ".ods": "OpenDocument spreadsheet (.ods)",
                 ".numbers": "Apple Numbers"}  # fmt: skip
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")


def _read_table(
    label: Path, needed: list[str], delimiter: str, encoding: str, sheet: str | None = None
) -> tuple[list[str], int, list[tuple[int, list[str]]], bool]:
    """The header and its line number, the data rows with theirs, and whether a decimal
    comma is read as a point (any field separator but the comma)."""
    if sheet is not None and label.suffix.lower() != ".xlsx":
        raise ValueError(
            f"CSV dataset: sheet={sheet!r} names a sheet of an .xlsx workbook; {label.name} is not one"
        )
    if label.suffix.lower() in _OTHER_SHEETS:
        raise DatasetFormatError(
            f"{label}: a {_OTHER_SHEETS[label.suffix.lower()]} file; save it as .xlsx or CSV"
        )
    if label.suffix.lower() == ".xlsx":
        try:
            table = read_xlsx(label, sheet)
        except ValueError as err:
            raise DatasetFormatError(str(err)) from None
        header_line, header, body = header_and_rows(table)
        # a sheet leaves out trailing empty cells
        rows = [(line, row + [""] * (len(header) - len(row))) for line, row in body if _filled(row)]
        return header, header_line, rows, True
    try:
        with open(label, newline="", encoding=encoding) as f:
            if delimiter == "auto":
                delimiter = _sniff_delimiter(f.readline(), needed)
                f.seek(0)
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, [])
            rows = [(reader.line_num, row) for row in reader if _filled(row)]
    except UnicodeDecodeError as err:
        raise DatasetFormatError(
            f"{label}: not {encoding} text (byte {err.start}: {err.reason}); save it as UTF-8 "
            "or give its encoding (--dataset-option encoding=latin-1)"
        ) from None
    except LookupError:
        raise ValueError(
            f"CSV dataset: unknown encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)"
        ) from None
    return header, 1, rows, delimiter != ","


def _filled(row: list[str]) -> bool:
    # spreadsheets often save blank rows (",,,") after the data
    return any(cell.strip() for cell in row)


def _sniff_delimiter(header: str, needed: list[str]) -> str:
    # The header must hold the named columns, which decides between separators more
    # surely than csv.Sniffer's guess from character counts. Where none gives them all,
    # the one that splits the header most, so that the error lists its real columns.
    fields = {d: next(csv.reader([header], delimiter=d), []) for d in _DELIMITERS}
    for delimiter in _DELIMITERS:
        if set(needed) <= set(fields[delimiter]):
            return delimiter
    return max(_DELIMITERS, key=lambda d: len(fields[d]))  # the first of equals: ","


@register_dataset("csv", "any CSV (or .xlsx) of image paths and scores (columns chosen by options)")
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
    delimiter: str = "auto",
    encoding: str = "utf-8-sig",
    allow_outside_root: bool = False,
    sheet: str | None = None,
) -> IQADataset:
    """Reads ``root/csv_file`` (a CSV, or a sheet of an ``.xlsx`` workbook);
    image paths are relative to ``root/image_dir``. A path written with backslashes and
    no slash (on Windows: ``imgs\\a.jpg``) reads as one with slashes.

    Args:
        scale: (low, high) of the scores; default: their min and max in the file.
        lower_better: the scores are DMOS-like.
        content_column: a column grouping images of one scene (kept on one side of splits).
        delimiter: of the CSV's fields (one character, or ``tab``); ``auto`` (default):
            the first of ``,`` ``;`` tab ``|`` that splits the header into the named
            columns (spreadsheets save ``;``-separated CSVs where the comma is the
            decimal mark). In a file not separated by commas, and in a workbook, a
            score such as ``2,5`` reads as 2.5.
        encoding: of the CSV file (UTF-8, with or without a byte-order mark, by default).
        allow_outside_root: accept absolute paths and ``..`` leading out of the image
            folder (refused by default: a label file must not read arbitrary files).
        sheet: the workbook's sheet of that name (default: its first sheet).

    Raises:
        DatasetFormatError: naming ``file:line``: a missing column, a short row, a score
            that is not a finite number, an image listed twice, a path outside the
            folder, text that is not in ``encoding``, a workbook that cannot be read or
            has no such ``sheet``.
        ValueError: a ``delimiter`` that is not one character, ``tab`` or ``auto``; a
            ``sheet`` for a file that is not a workbook.
    """
    delimiter = _DELIMITER_NAMES.get(delimiter, delimiter)
    if delimiter != "auto" and len(delimiter) != 1:
        raise ValueError(
            f"CSV dataset: delimiter {delimiter!r} must be one character, 'tab' or 'auto'"
        )
    label = find_file(root, [csv_file], "CSV dataset")
    needed = [c for c in (path_column, score_column, content_column) if c]
    rows = []
    seen: dict[str, int] = {}
    columns, header_line, table, decimal_comma = _read_table(
        label, needed, delimiter, encoding, sheet
    )
    for needed_column in needed:
        if needed_column not in columns:
            names = sheet_names(label) if label.suffix.lower() == ".xlsx" else []
            read = (
                f" of sheet {sheet or names[0]!r} (the workbook's sheets: {names}; choose one with --sheet NAME, or --dataset-option sheet=NAME)"
                if len(names) > 1
                else ""
            )
            raise DatasetFormatError(
                f"{label}:{header_line}: no column {needed_column!r}; columns are {columns}{read}"
            )
    for line, row in table:
        if len(row) < len(columns):
            raise DatasetFormatError(
                f"{label}:{line}: {len(row)} fields, the header has {len(columns)}"
            )
        row = dict(zip(columns, row, strict=False))
        text = row[score_column]
        if decimal_comma and _DECIMAL_COMMA.fullmatch(text.strip()):
            text = text.replace(",", ".")
        raw = parse_float(text, f"{label}:{line}", score_column)
        name = row[path_column]
        if "\\" in name and "/" not in name:  # written on Windows: imgs\a.jpg
            name = name.replace("\\", "/")
        key = Path(name).as_posix()
        if key in seen:
            raise DatasetFormatError(
                f"{label}:{line}: {name!r} is listed again (first on line {seen[key]}); "
                "each image must appear once"
            )
        seen[key] = line
        rows.append((name, raw, row[content_column] if content_column else ""))
    if not rows:
        raise DatasetFormatError(f"{label}: no data rows")
    raws = [r[1] for r in rows]
    if not scale and min(raws) == max(raws):  # no scale to infer, nor anything to rank
        raise DatasetFormatError(
            f"{label}: every score is {raws[0]:g} ({len(raws)} row(s)): there is no ranking "
            "to learn or measure"
        )
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
