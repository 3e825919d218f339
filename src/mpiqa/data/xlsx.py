"""Read a worksheet of an .xlsx file (the first, or one by name) into rows of strings.

CSIQ and SPAQ publish their labels as spreadsheets. Reading one table does not justify a
runtime dependency on openpyxl: an .xlsx file is a zip of XML parts, read here with the
standard library (shared strings, inline strings and numbers; a formula's saved value,
not the formula: one saved without a value reads as ``=FORMULA``; no styles).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_CELL_REF = re.compile(r"([A-Z]+)(\d+)")
_MAX_ROWS = 1_048_576  # a worksheet's limit (Excel's and the format's)


def _column_index(letters: str) -> int:
    index = 0
    for ch in letters:
        index = index * 26 + (ord(ch) - ord("A") + 1)
    return index - 1


def _sheets(archive: zipfile.ZipFile) -> list[ElementTree.Element]:
    """The workbook's sheet entries, in their order (each with its ``name``)."""
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    return workbook.findall("m:sheets/m:sheet", _NS)


def _sheet_path(archive: zipfile.ZipFile, name: str | None) -> str:
    """The archive member of the sheet called ``name`` (default: the first sheet)."""
    sheets = _sheets(archive)
    if not sheets:
        raise ValueError("workbook has no worksheet")
    if name is None:
        sheet = sheets[0]
    else:
        matching = [s for s in sheets if s.get("name") == name]
        if not matching:
            raise SheetNotFoundError(name, [s.get("name", "") for s in sheets])
        sheet = matching[0]
    rel_id = sheet.get(_REL_NS)
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    for rel in rels:
        if rel.get("Id") == rel_id:
            target = rel.get("Target", "")
            return target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    raise ValueError(f"worksheet relation {rel_id} not found")


class SheetNotFoundError(ValueError):
    """The workbook has no sheet of the name asked for (the message lists its sheets)."""

    def __init__(self, name: str, names: list[str]) -> None:
        super().__init__(f"no sheet {name!r}; the workbook's sheets are {names}")


def sheet_names(path: str | Path) -> list[str]:
    """The names of a workbook's sheets, in their order ([] if it cannot be read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [s.get("name", "") for s in _sheets(archive)]
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, OSError):
        return []


def read_xlsx(path: str | Path, sheet_name: str | None = None) -> list[list[str]]:
    """Rows of a worksheet, each a list of cell texts ('' for empty cells); row ``i`` of
    the sheet is item ``i - 1``, blank rows (which a sheet leaves out) included as [],
    so that messages can name the row a user sees.

    Args:
        sheet_name: the sheet to read, by its name; default the first.

    Raises:
        ValueError: not a readable .xlsx file, or no sheet of that name (the message
            names the file, and the sheets it has).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            shared: list[str] = []
            if "xl/sharedStrings.xml" in archive.namelist():
                root = ElementTree.fromstring(archive.read("xl/sharedStrings.xml"))
                for item in root.findall("m:si", _NS):
                    shared.append("".join(t.text or "" for t in item.iter(f"{{{_NS['m']}}}t")))
            sheet = ElementTree.fromstring(archive.read(_sheet_path(archive, sheet_name)))
    except SheetNotFoundError as err:
        raise ValueError(f"{path}: {err}") from None
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .xlsx workbook ({err})") from None
    rows: list[list[str]] = []
    for row in sheet.iterfind("m:sheetData/m:row", _NS):
        number = row.get("r", "")
        if number.isdigit() and len(rows) < int(number) <= _MAX_ROWS:
            rows.extend([] for _ in range(int(number) - 1 - len(rows)))
        cells: dict[int, str] = {}
        for cell in row.iterfind("m:c", _NS):
            match = _CELL_REF.match(cell.get("r", ""))
            column = _column_index(match.group(1)) if match else len(cells)
            kind = cell.get("t")
            if kind == "inlineStr":
                text = "".join(t.text or "" for t in cell.iter(f"{{{_NS['m']}}}t"))
            else:
                value = cell.find("m:v", _NS)
                text = value.text or "" if value is not None else ""
                if kind == "s" and text:
                    text = shared[int(text)]
                formula = cell.find("m:f", _NS)
                if not text and formula is not None and formula.text:
                    # no value saved with it (a program that writes formulas without
                    # computing them): shown as the formula, which errors then name
                    text = "=" + formula.text
            cells[column] = text
        width = max(cells) + 1 if cells else 0
        rows.append([cells.get(i, "") for i in range(width)])
    return rows


def header_and_rows(
    table: list[list[str]],
) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """A sheet's header row (its first row that is not blank: a header may sit below
    blank rows) as (row number, cells), and the rows below it with their row numbers."""
    start = next((i for i, row in enumerate(table) if any(c.strip() for c in row)), None)
    if start is None:
        return 1, [], []
    return start + 1, table[start], list(enumerate(table[start + 1 :], start=start + 2))
