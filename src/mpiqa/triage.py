"""A triage page for the CSV that ``mpiqa score`` writes (``mpiqa report``).

One self-contained HTML file that opens in a browser from disk, without a server: the
worst and best photos as embedded thumbnails, a histogram of scores (inline SVG), the
count per predicted distortion and scene where the CSV has those columns, and a table of
every file that sorts by any column when its header is clicked. The table's thumbnails
are links relative to the page (loaded lazily), so a page for 10,000 photos stays small;
the worst/best thumbnails are embedded, so that part survives moving the page alone.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import os
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from mpiqa.data.images import ImageDecodeError, load_image

logger = logging.getLogger(__name__)

#: the columns ``mpiqa score`` writes whose values are class names worth counting
_CLASS_COLUMNS = ("distortion", "scene")


class ScoresFileError(ValueError):
    """The scores CSV cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class ScoredFile:
    """One row of a scores CSV: the file as written, its score and the other columns."""

    path: str
    score: float
    extra: dict[str, str] = field(default_factory=dict)


def read_scores(path: str | Path) -> tuple[list[str], list[ScoredFile]]:
    """Read a CSV written by ``mpiqa score`` (a ``path`` and a ``score`` column, maybe more).

    File names that are not UTF-8 were written as raw bytes; they are read back the same
    way (``surrogateescape``), so each name still opens its file.

    Returns:
        (the columns other than path and score, the rows in file order).

    Raises:
        ScoresFileError: missing file, no ``path``/``score`` columns, a short row or a
            score that is not a finite number (naming ``file:line``).
    """
    path = Path(path)
    if not path.is_file():
        raise ScoresFileError(f"{path}: no such file")
    rows: list[ScoredFile] = []
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or "path" not in header or "score" not in header:
            raise ScoresFileError(
                f"{path}:1: expected a header with 'path' and 'score' columns "
                f"(the CSV of `mpiqa score`), got {header}"
            )
        at_path, at_score = header.index("path"), header.index("score")
        others = [(i, name) for i, name in enumerate(header) if i not in (at_path, at_score)]
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise ScoresFileError(
                    f"{path}:{line}: {len(row)} field(s) where the header has {len(header)}"
                )
            try:
                score = float(row[at_score])
            except ValueError:
                raise ScoresFileError(
                    f"{path}:{line}: score {row[at_score]!r} is not a number"
                ) from None
            if not np.isfinite(score):
                raise ScoresFileError(f"{path}:{line}: score {row[at_score]} is not finite")
            rows.append(ScoredFile(row[at_path], score, {name: row[i] for i, name in others}))
    return [name for _, name in others], rows


def thumbnail_data_uri(path: str | Path, size: int = 256) -> str | None:
    """A JPEG thumbnail (longer side ``size``) as a ``data:`` URI; ``None`` (and a
    warning) when the image cannot be read, so one missing photo never stops a report."""
    try:
        image = load_image(path, draft=(size, size))
    except ImageDecodeError as err:
        logger.warning("no thumbnail: %s", err)
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def histogram_svg(
    scores: Sequence[float], bins: int = 20, width: int = 560, height: int = 200
) -> str:
    """An inline SVG histogram of ``scores`` with labelled axes."""
    counts, edges = np.histogram(np.asarray(scores, dtype=float), bins=bins)
    left, bottom, top = 44, 30, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max(int(counts.max()), 1)
    bar_w = plot_w / bins
    parts = [
        f'<svg class="histogram" role="img" aria-label="histogram of scores" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        x, y = left + i * bar_w, top + plot_h - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}">'
            f"<title>{edges[i]:.3f}–{edges[i + 1]:.3f}: {count}</title></rect>"
        )
    axis_y = top + plot_h
    parts.append(
        f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" class="axis"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" class="axis"/>'
        f'<text x="{left}" y="{axis_y + 14}" text-anchor="middle">{edges[0]:.3g}</text>'
        f'<text x="{left + plot_w}" y="{axis_y + 14}" text-anchor="end">{edges[-1]:.3g}</text>'
        f'<text x="{left + plot_w / 2}" y="{axis_y + 26}" text-anchor="middle">score</text>'
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{peak}</text>'
        f'<text x="{left - 4}" y="{axis_y}" text-anchor="end">0</text>'
        "</svg>"
    )
    return "".join(parts)


def _display(name: str) -> str:
    """A file name for people: undecodable bytes shown as U+FFFD, then HTML-escaped."""
    return html.escape(os.fsencode(name).decode("utf-8", errors="replace"))


# image formats every current browser displays in an <img>
BROWSER_FORMATS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp", ".avif", ".svg"}
)


def _href(image: Path, page_dir: Path) -> str:
    """A URL of ``image`` relative to the page, every byte of the name kept."""
    try:
        rel = os.path.relpath(image, page_dir)
    except ValueError:  # another drive on Windows: an absolute file URL
        return image.resolve().as_uri()
    return html.escape(quote(os.fsencode(rel).replace(os.sep.encode(), b"/")))


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; width: 200px; font-size: 0.8em; }
figure img, figure .missing { width: 200px; height: 150px; object-fit: contain;
  background: #eee; display: block; }
figure .missing { display: flex; align-items: center; justify-content: center; color: #888; }
figcaption { overflow-wrap: anywhere; } figcaption b { font-size: 1.2em; }
.histogram rect { fill: #4c78a8; } .histogram .axis { stroke: #222; }
.histogram text { font-size: 11px; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { cursor: pointer; background: #f4f4f4; position: sticky; top: 0; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
td img { height: 48px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""

# Sort on a header click: numbers by value (data-v), text by locale; a second click
# reverses. A link ending in #sort=score (or #sort=-score, descending) opens sorted.
_SCRIPT = """
function sortBy(th, asc) {
  const table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
  table.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", asc ? "ascending" : "descending");
  const key = r => r.cells[col].dataset.v ?? r.cells[col].textContent;
  const numeric = th.dataset.type === "number";
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b);
    const c = numeric ? x - y : x.localeCompare(y);
    return asc ? c : -c;
  });
  body.append(...rows);
}
document.querySelectorAll("table.sortable th").forEach(th => th.addEventListener(
  "click", () => sortBy(th, th.getAttribute("aria-sort") !== "ascending")));
const wanted = decodeURIComponent(location.hash).match(/^#sort=(-?)(.+)$/);
if (wanted) {
  const th = Array.from(document.querySelectorAll("table.sortable th"))
    .find(h => h.textContent.trim() === wanted[2]);
  if (th) sortBy(th, wanted[1] !== "-");
}
"""


def _figure(item: ScoredFile, thumb: str | None) -> str:
    image = (
        f'<img src="{thumb}" alt="{_display(item.path)}">'
        if thumb
        else '<div class="missing">image not readable</div>'
    )
    return (
        f"<figure>{image}<figcaption><b>{item.score:.3f}</b> "
        f"{_display(item.path)}</figcaption></figure>"
    )


def _counts_table(column: str, rows: Sequence[ScoredFile]) -> str:
    counts = Counter(r.extra.get(column, "") for r in rows)
    lines = [f"<table><thead><tr><th>{column}</th><th>photos</th></tr></thead><tbody>"]
    for name, count in counts.most_common():
        lines.append(f'<tr><td>{html.escape(name)}</td><td class="num">{count}</td></tr>')
    return "".join(lines) + "</tbody></table>"


def render_report(
    columns: Sequence[str],
    rows: Sequence[ScoredFile],
    *,
    image_root: Path,
    page_dir: Path,
    n: int = 20,
    thumb_size: int = 256,
    title: str = "mpiqa report",
) -> str:
    """The HTML page (see the module docstring) as a string.

    Args:
        columns: the CSV's columns other than path and score.
        rows: its rows.
        image_root: where relative paths in the CSV start.
        page_dir: the folder the page will be written to (its links are relative to it).
        n: how many worst and best photos to show.
        thumb_size: longer side of the embedded thumbnails, in pixels.
    """
    if not rows:
        raise ScoresFileError("the scores file has no rows")
    order = sorted(range(len(rows)), key=lambda i: rows[i].score)
    worst = [rows[i] for i in order[:n]]
    best = [rows[i] for i in reversed(order[-n:])]

    def locate(item: ScoredFile) -> Path:
        p = Path(item.path)
        return p if p.is_absolute() else image_root / p

    shown = {id(r): r for r in (*worst, *best)}  # a row can be among both (few rows)
    thumbs = {key: thumbnail_data_uri(locate(r), thumb_size) for key, r in shown.items()}
    scores = [r.score for r in rows]
    summary = (
        f"{len(rows)} photos · scores from {min(scores):.3f} to {max(scores):.3f} · "
        f"median {statistics.median(scores):.3f} · mean {statistics.fmean(scores):.3f} · "
        "higher is better"
    )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{summary}</p>",
        f'<h2 id="worst">Worst {len(worst)}</h2><div class="grid">',
        *(_figure(r, thumbs[id(r)]) for r in worst),
        f'</div><h2 id="best">Best {len(best)}</h2><div class="grid">',
        *(_figure(r, thumbs[id(r)]) for r in best),
        '</div><h2 id="histogram">Scores</h2>',
        histogram_svg(scores),
    ]
    for column in _CLASS_COLUMNS:
        if column in columns:
            out += [
                f'<h2 id="{column}">Predicted {column}</h2>',
                f"<p>The model's most probable {column} class per photo "
                "(see the model card for how often it is right).</p>",
                _counts_table(column, rows),
            ]
    out.append('<h2 id="all">All photos</h2><p>Click a column header to sort.</p>')
    numeric = {c for c in columns if all(_is_number(r.extra.get(c, "")) for r in rows)}
    head = ['<th data-type="number">rank</th>', "<th>photo</th>", "<th>file</th>"]
    head.append('<th data-type="number" aria-sort="ascending">score</th>')
    head += [
        f"<th{' data-type=number' if c in numeric else ''}>{html.escape(c)}</th>" for c in columns
    ]
    out.append(f'<table class="sortable"><thead><tr>{"".join(head)}</tr></thead><tbody>')
    for rank, i in enumerate(order, 1):
        r = rows[i]
        path = locate(r)
        link = _href(path, page_dir)
        # a browser shows these formats itself; others (HEIC, TIFF, ...) get a link only
        preview = (
            f'<img loading="lazy" src="{link}" alt="">'
            if path.suffix.lower() in BROWSER_FORMATS
            else '<span class="missing">open</span>'
        )
        cells = [
            f'<td class="num" data-v="{rank}">{rank}</td>',
            f'<td><a href="{link}">{preview}</a></td>',
            f"<td>{_display(r.path)}</td>",
            f'<td class="num" data-v="{r.score!r}">{r.score:.4f}</td>',
        ]
        for c in columns:
            value = r.extra.get(c, "")
            attr = f' class="num" data-v="{html.escape(value)}"' if c in numeric else ""
            cells.append(f"<td{attr}>{html.escape(value)}</td>")
        out.append(f"<tr>{''.join(cells)}</tr>")
    out += ["</tbody></table>", f"<script>{_SCRIPT}</script></body></html>"]
    return "\n".join(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_report(
    scores_csv: str | Path,
    out: str | Path,
    *,
    image_root: str | Path | None = None,
    n: int = 20,
    thumb_size: int = 256,
) -> int:
    """Read ``scores_csv``, write the page to ``out`` (replacing it only once complete).

    Args:
        image_root: where the CSV's relative paths start; default the current folder,
            where ``mpiqa score`` was run.

    Returns:
        the number of photos in the report.

    Raises:
        ScoresFileError: see :func:`read_scores`; also for a CSV without rows.
    """
    if n < 1:
        raise ValueError(f"-n must be at least 1, got {n}")
    out = Path(out)
    columns, rows = read_scores(scores_csv)
    if not rows:
        raise ScoresFileError(f"{scores_csv}: no rows below its header (nothing was scored)")
    root = Path(image_root) if image_root is not None else Path.cwd()
    page = render_report(
        columns, rows, image_root=root, page_dir=out.resolve().parent, n=n,
        thumb_size=thumb_size, title=f"mpiqa report: {Path(scores_csv).name}",
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return len(rows)
