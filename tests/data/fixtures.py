"""Writers of dataset label files in their documented original formats (test fixtures)."""

from __future__ import annotations

import zipfile
from pathlib import Path

_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def write_xlsx(
    path: str | Path,
    rows: list[list[str | float] | None],
    more_sheets: dict[str, list[list[str | float] | None]] | None = None,
) -> None:
    """Write a minimal workbook (inline strings; "=..." a formula without a saved value):
    ``rows`` on a sheet named "Sheet1",
    then ``more_sheets`` (name: rows) in order; a row given as None is left out of the
    sheet's XML, as spreadsheet programs write a blank row. Used to make test fixtures in
    the datasets' documented layouts."""

    def cell(ref: str, value: str | float) -> str:
        if isinstance(value, (int, float)):
            return f'<c r="{ref}"><v>{value}</v></c>'
        if str(value).startswith("="):  # a formula saved without its value
            return f'<c r="{ref}"><f>{value[1:]}</f></c>'
        text = str(value).replace("&", "&amp;").replace("<", "&lt;")
        return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'

    def letters(i: int) -> str:
        out = ""
        i += 1
        while i:
            i, r = divmod(i - 1, 26)
            out = chr(65 + r) + out
        return out

    def body(table: list[list[str | float] | None]) -> str:
        return "".join(
            f'<row r="{r + 1}">'
            + "".join(cell(f"{letters(c)}{r + 1}", v) for c, v in enumerate(row))
            + "</row>"
            for r, row in enumerate(table)
            if row is not None
        )

    sheets = {"Sheet1": rows, **(more_sheets or {})}
    main = _NS["m"]
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
        )
        z.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
            + "".join(
                f'<sheet name="{name}" sheetId="{i + 1}" r:id="rId{i + 1}"/>'
                for i, name in enumerate(sheets)
            )
            + "</sheets></workbook>",
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            + "".join(
                f'<Relationship Id="rId{i + 1}" Type="worksheet" Target="worksheets/sheet{i + 1}.xml"/>'
                for i in range(len(sheets))
            )
            + "</Relationships>",
        )
        for i, table in enumerate(sheets.values()):
            z.writestr(
                f"xl/worksheets/sheet{i + 1}.xml",
                f'<worksheet xmlns="{main}"><sheetData>{body(table)}</sheetData></worksheet>',
            )


def write_image(path: Path, size=(8, 6), value=128) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value // 2, 255 - value)).save(path)
    return path


def write_noise_images(folder: Path, names, size=(24, 32), seed: int = 0) -> Path:
    """Uniform-noise RGB images (``size`` = height, width) named ``names`` in ``folder``
    (made if missing), one random draw per image in order. Returns ``folder``."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    return folder
