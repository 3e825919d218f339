"""``mpiqa report``: the triage page of a scores CSV, read back as written, and shown by a
real headless Chromium when one is installed (Debian package ``chromium``)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from mpiqa.cli.main import main
from mpiqa.triage import ScoresFileError, read_scores, render_report, write_report

COLOURS = {"red": (220, 20, 20), "green": (20, 180, 20), "blue": (20, 20, 220)}


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def library(tmp_path):
    """Nine solid-colour photos; the red one is the worst, and a scores CSV naming them
    by paths relative to ``tmp_path`` (as `mpiqa score photos/` run there writes)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rows = []
    for i in range(9):
        colour = "red" if i == 4 else ("green" if i % 2 else "blue")
        Image.new("RGB", (120, 90), COLOURS[colour]).save(folder / f"p{i}.jpg")
        score = 0.05 if colour == "red" else 0.5 + i / 20
        rows.append([f"photos/p{i}.jpg", f"{score:.6f}"])
    scores = tmp_path / "scores.csv"
    _write_csv(scores, ["path", "score"], rows)
    return tmp_path, scores


def test_read_scores_round_trips_names_and_extra_columns(tmp_path):
    weird = os.fsdecode(b'bad\xff name,\r\n"quoted".jpg')
    path = tmp_path / "s.csv"
    _write_csv(
        path, ["path", "score", "distortion", "distortion_prob"],
        [[weird, "0.25", "blur", "0.9"], ["b.jpg", "0.75", "noise", "0.6"]],
    )  # fmt: skip
    columns, rows = read_scores(path)
    assert columns == ["distortion", "distortion_prob"]
    assert [r.path for r in rows] == [weird, "b.jpg"]
    assert [r.score for r in rows] == [0.25, 0.75]
    assert rows[1].extra == {"distortion": "noise", "distortion_prob": "0.6"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,quality\na.jpg,0.5\n", r"s\.csv:1: expected a header with 'path' and 'score'"),
        ("path,score\na.jpg,0.5\nb.jpg\n", r"s\.csv:3: 1 field\(s\) where the header has 2"),
        ("path,score\na.jpg,good\n", r"s\.csv:2: score 'good' is not a number"),
        ("path,score\na.jpg,nan\n", r"s\.csv:2: score nan is not finite"),
    ],
)
def test_read_scores_names_file_and_line_of_bad_input(tmp_path, text, message):
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(ScoresFileError, match=message):
        read_scores(path)


def test_report_orders_worst_first_and_escapes_names(tmp_path, library):
    root, scores = library
    columns, rows = read_scores(scores)
    page = render_report(columns, rows, image_root=root, page_dir=root, n=2)
    worst = page.split('id="worst"')[1].split('id="best"')[0]
    assert worst.count("<figure>") == 2
    assert worst.index("photos/p4.jpg") < worst.index("photos/p0.jpg")  # 0.05, then 0.5
    best = page.split('id="best"')[1].split('id="histogram"')[0]
    assert best.index("photos/p8.jpg") < best.index("photos/p7.jpg")
    assert worst.count("data:image/jpeg;base64,") == 2  # thumbnails embedded
    assert page.count("<tr>") == 1 + 9  # header + every photo in the table
    assert 'id="distortion"' not in page  # no such column: no counts

    evil = [*rows, type(rows[0])("<script>alert(1)</script>.jpg", 0.0)]
    page = render_report(columns, evil, image_root=root, page_dir=root, n=2)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in page
    assert "image not readable" in page  # that file does not exist: no thumbnail, no crash


def test_report_links_are_relative_to_the_page_and_keep_every_byte(tmp_path):
    name = os.fsdecode(b"caf\xe9 #1.jpg")  # latin-1 byte, a space and a '#'
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(os.fsencode(photos / name), format="JPEG")
    scores = tmp_path / "s.csv"
    _write_csv(scores, ["path", "score"], [[f"photos/{name}", "0.5"]])
    out = tmp_path / "pages" / "r.html"
    write_report(scores, out, image_root=tmp_path)
    page = out.read_text(encoding="utf-8")
    assert 'href="../photos/caf%E9%20%231.jpg"' in page
    assert "caf\ufffd #1.jpg" in page  # shown with a replacement character


def test_report_counts_distortions_and_marks_numeric_columns(tmp_path, library):
    root, _ = library
    scores = tmp_path / "d.csv"
    _write_csv(
        scores, ["path", "score", "distortion", "distortion_prob"],
        [["a.jpg", "0.1", "blur", "0.9"], ["b.jpg", "0.2", "blur", "0.8"],
         ["c.jpg", "0.9", "noise", "0.7"]],
    )  # fmt: skip
    columns, rows = read_scores(scores)
    page = render_report(columns, rows, image_root=root, page_dir=root)
    counts = page.split('id="distortion"')[1].split("</table>")[0]
    assert re.search(
        r"<td>blur</td><td class=\"num\">2</td>.*<td>noise</td><td class=\"num\">1", counts
    )
    assert "<th data-type=number>distortion_prob</th>" in page
    assert "<th>distortion</th>" in page


def test_report_cli_writes_page_and_refuses_bad_arguments(library, capsys, monkeypatch):
    root, scores = library
    monkeypatch.chdir(root)
    assert main(["report", str(scores), "--out", "r.html", "-n", "3"]) == 0
    assert "9 photos" in capsys.readouterr().out
    assert (root / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert not list(root.glob(".r.html*"))  # the partial file was renamed into place
    assert main(["report", str(root / "missing.csv"), "--out", "x.html"]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
    assert main(["report", str(scores), "--out", "x.html", "-n", "0"]) == 2


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="needs a Chromium (Debian package `chromium`)")
def test_chromium_shows_the_worst_photo_first_and_sorts_the_table(tmp_path, library):
    root, scores = library
    out = root / "report" / "r.html"
    write_report(scores, out, image_root=root, n=3)
    shot = tmp_path / "shot.png"
    _chromium("--window-size=1000,700", f"--screenshot={shot}", out.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 70) & (pixels[..., 2] < 70)
    ys, xs = np.nonzero(red)
    # the red (worst) photo is drawn as the first thumbnail: a large block at the top left
    assert red.sum() > 150 * 100, red.sum()
    assert xs.min() < 100 and ys.max() < 350, (xs.min(), ys.max())

    # the page's own script sorts the table (#sort=-score: best first)
    dom = _chromium("--dump-dom", out.as_uri() + "#sort=-score").stdout.decode()
    table = dom.split('class="sortable"')[1]
    ranked = re.findall(r"photos/p(\d)\.jpg</td>", table)
    assert ranked[0] == "8" and ranked[-1] == "4", ranked


def test_the_table_previews_only_formats_a_browser_shows(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.tif"):
        Image.new("RGB", (8, 8)).save(photos / name)
    scores = tmp_path / "s.csv"
    _write_csv(scores, ["path", "score"], [["photos/a.jpg", "0.5"], ["photos/b.tif", "0.4"]])
    write_report(scores, tmp_path / "r.html", image_root=tmp_path)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<img loading="lazy" src="photos/a.jpg"' in page
    assert 'src="photos/b.tif"' not in page and '<a href="photos/b.tif">' in page
