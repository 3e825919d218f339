"""``mpiqa score`` end to end, in process (and once through the installed entry point)."""

from __future__ import annotations

import csv
import io
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mpiqa.cli.main import main

TINY = ["--backbone", "test-tiny", "--weights", "random", "--workers", "0", "--no-progress"]


def _same_scores(a: str, b: str) -> None:
    """Same rows in the same order, scores equal up to float reassociation: batches of
    another size (or another process's threads) may move the sixth decimal on some CPUs."""
    rows_a, rows_b = (list(csv.reader(io.StringIO(t))) for t in (a, b))
    assert [r[0] for r in rows_a] == [r[0] for r in rows_b] and rows_a[0] == rows_b[0]
    for ra, rb in zip(rows_a[1:], rows_b[1:], strict=True):
        assert abs(float(ra[1]) - float(rb[1])) <= 2e-6, (ra, rb)


def _rows(text):
    return list(csv.reader(io.StringIO(text)))


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "photos with spaces é"
    d.mkdir()
    for name in ["img10.jpg", "img2.png", "img1.bmp"]:
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(d / name)
    (d / "readme.txt").write_text("not an image")
    return d


def test_micro_set_writes_header_and_five_rows(micro_dir, tmp_path):
    out = tmp_path / "s.csv"
    assert main(["score", str(micro_dir), "--out", str(out), *TINY]) == 0
    rows = _rows(out.read_text())
    assert rows[0] == ["path", "score"] and len(rows) == 6
    assert all(0.0 <= float(score) <= 1.0 for _, score in rows[1:])


def test_natural_order_stdout_and_same_scores_for_same_seed(folder, capsys):
    assert main(["score", str(folder), *TINY]) == 0
    first = _rows(capsys.readouterr().out)
    assert [r[0].rsplit("/", 1)[1] for r in first[1:]] == ["img1.bmp", "img2.png", "img10.jpg"]
    assert main(["score", str(folder), *TINY]) == 0
    assert _rows(capsys.readouterr().out) == first
    assert (
        main(["score", str(folder), *TINY[:-3], "--seed", "1", "--workers", "0", "--no-progress"])
        == 0
    )
    assert _rows(capsys.readouterr().out) != first


def test_bad_files_are_reported_and_the_rest_scored(folder, capsys):
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "corrupt.png").write_bytes(b"\x89PNG garbage")
    code = main(["score", str(folder), str(folder / "readme.txt"), *TINY])
    captured = capsys.readouterr()
    rows = _rows(captured.out)
    assert code == 1
    assert len(rows) == 1 + 3
    errors = [line for line in captured.err.splitlines() if line.startswith("mpiqa: error:")]
    assert len(errors) == 3
    assert any("zero.jpg: empty file" in e for e in errors)
    assert any("corrupt.png" in e for e in errors) and any("readme.txt" in e for e in errors)
    assert "3 of 6 file(s) could not be scored" in captured.err


def test_on_error_fail_stops(folder, capsys):
    (folder / "img0.jpg").write_bytes(b"")
    assert main(["score", str(folder), "--on-error", "fail", *TINY]) == 1
    captured = capsys.readouterr()
    assert "img0.jpg: empty file" in captured.err and "--on-error fail" in captured.err
    assert _rows(captured.out) == [["path", "score"]]


def test_an_unreadable_folder_is_reported_and_the_rest_scored(
    folder, tmp_path, forbid_listing, capsys
):
    locked = tmp_path / "locked"
    locked.mkdir()
    forbid_listing(locked)
    assert main(["score", str(locked), str(folder), *TINY]) == 1
    captured = capsys.readouterr()
    assert len(_rows(captured.out)) == 1 + 3
    assert f"mpiqa: error: cannot list folder {locked}: Permission denied" in captured.err
    assert "0 of 3 file(s) could not be scored; 3 scored; 1 folder(s)" in captured.err
    assert main(["score", str(locked), str(folder), "--on-error", "fail", *TINY]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "(stopping: --on-error fail)" in captured.err


def test_recursive_scoring_warns_of_folder_links_it_does_not_follow(folder, tmp_path, capsys):
    (folder / "more").symlink_to(tmp_path)
    assert main(["score", str(folder), "-r", *TINY]) == 0
    captured = capsys.readouterr()
    assert len(_rows(captured.out)) == 1 + 3
    assert f"did not follow 1 symbolic link(s) to folders: {folder / 'more'}" in captured.err


def test_hidden_files_are_left_out_with_a_warning(folder, capsys):
    # a folder copied from a Mac: "._img2.png" holds file metadata, not an image (before:
    # reported as a bad image, exit status 1); a thumbnail cache is not the photos
    (folder / "._img2.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (folder / ".thumbnails").mkdir()
    Image.new("RGB", (8, 8)).save(folder / ".thumbnails" / "img2.png")
    assert main(["score", str(folder), "-r", *TINY]) == 0
    captured = capsys.readouterr()
    assert [r[0] for r in _rows(captured.out)[1:]] == [
        str(folder / n) for n in ("img1.bmp", "img2.png", "img10.jpg")
    ]
    assert "left out 2 hidden image file(s)" in captured.err and "._img2.png" in captured.err


def test_worker_processes_give_the_same_csv(folder, capsys):
    assert main(["score", str(folder), *TINY]) == 0
    in_process = capsys.readouterr().out
    assert (
        main(
            [
                "score",
                str(folder),
                *TINY[:4],
                "--workers",
                "2",
                "--batch-size",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    _same_scores(capsys.readouterr().out, in_process)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_worker_processes_started_afresh_give_the_same_csv(folder, capsys, method):
    """Workers that do not inherit this process by fork: macOS starts them by spawn and
    Python 3.14 on Linux by forkserver, so what a worker gets (dataset, preprocessing)
    must pickle. A corrupt file is still reported by name and the rest scored."""
    (folder / "bad.jpg").write_bytes(b"not a jpeg")
    assert main(["score", str(folder), *TINY]) == 1
    in_process = capsys.readouterr().out
    script = (
        "import multiprocessing, sys\n"
        f"multiprocessing.set_start_method({method!r})\n"
        "from mpiqa.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = [*TINY[:4], "--workers", "2", "--batch-size", "2", "--no-progress"]
    done = subprocess.run(
        [sys.executable, "-c", script, "score", str(folder), *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "bad.jpg" in done.stderr and "Traceback" not in done.stderr
    _same_scores(done.stdout, in_process)


def test_missing_weights_is_one_clear_line(folder, capsys):
    assert main(["score", str(folder), "--backbone", "ViT-B/32", "--no-progress"]) == 2
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if "error:" in line]
    assert len(error) == 1 and error[0].startswith("mpiqa: error: pretrained weights for ViT-B-32")
    assert "ViT-B-32.pt" in err and "--weights FILE" in err and "Traceback" not in err


def test_usage_errors(folder, capsys, tmp_path):
    assert main(["score", str(tmp_path / "empty-dir-that-does-not-exist"), *TINY]) == 1
    assert main(["score", str(folder), "--weights", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt" in capsys.readouterr().err
    assert main(["score", str(folder), "--batch-size", "0"]) == 2
    assert "argument --batch-size" in capsys.readouterr().err


def test_files_from_a_list_and_from_standard_input(folder, tmp_path, capsys):
    assert main(["score", str(folder), *TINY]) == 0
    whole = _rows(capsys.readouterr().out)
    odd = folder / "odd\udcff name.jpg"  # a name that is not UTF-8, as find prints it
    (folder / "img1.bmp").rename(odd)
    listing = tmp_path / "list.txt"
    listing.write_bytes(
        b"".join(os.fsencode(p) + b"\r\n" for p in [folder / "img2.png", odd]) + b"\n"
    )
    out = tmp_path / "s.csv"
    code = main(["score", "--files-from", str(listing), str(folder / "img10.jpg"), *TINY,
                 "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = _rows(out.read_text(errors="surrogateescape"))
    names = [str(folder / "img2.png"), str(folder / "img10.jpg"), str(odd)]  # natural order
    assert [r[0] for r in rows[1:]] == names
    # the same images, the same scores (img1.bmp was renamed odd...)
    assert [r[1] for r in rows[1:]] == [r[1] for r in whole[2:]] + [whole[1][1]]
    # '-': standard input, here the folder itself (expanded as a PATH is)
    command = [sys.executable, "-m", "mpiqa", "score", "--files-from", "-", *TINY]
    result = subprocess.run(
        command,
        input=f"{folder}\n",
        capture_output=True,
        text=True,
        errors="surrogateescape",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 4
    listing.write_text("\n\n")
    assert main(["score", "--files-from", str(listing), *TINY]) == 2
    assert f"--files-from {listing} lists no path" in capsys.readouterr().err
    assert main(["score", "--files-from", str(tmp_path / "none.txt"), *TINY]) == 2
    assert f"--files-from {tmp_path / 'none.txt'}: no such file" in capsys.readouterr().err
    assert main(["score", *TINY]) == 2
    assert "give image files or folders" in capsys.readouterr().err


def test_heic_files_left_out_say_what_would_read_them(folder, monkeypatch, capsys):
    import mpiqa.data.files as files
    import mpiqa.data.images as images

    # as on a machine without pi-heif
    monkeypatch.setattr(images, "HEIF_READABLE", False)
    monkeypatch.setattr(files, "IMAGE_EXTENSIONS", files.IMAGE_EXTENSIONS - images.HEIF_EXTENSIONS)
    (folder / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + bytes(40))
    assert main(["score", str(folder), *TINY]) == 0
    captured = capsys.readouterr()
    assert len(_rows(captured.out)) == 4
    assert "IMG_0001.HEIC" in captured.err and "pip install 'mpiqa[heif]'" in captured.err


def test_log_options_go_before_or_after_the_command(folder, capsys):
    # TINY's --weights random logs a warning: -q hides it wherever it stands
    for argv in (["-q", "score", str(folder), *TINY], ["score", str(folder), "-q", *TINY]):
        assert main(argv) == 0
        assert "WARNING" not in capsys.readouterr().err
    assert main(["score", str(folder), "-v", *TINY]) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "INFO: scored 3 file(s)" in err and "DEBUG" not in err
    assert logging.getLogger("mpiqa").level == logging.INFO
    assert main(["-v", "score", str(folder), "-v", *TINY]) == 0  # counted together: -vv
    assert logging.getLogger("mpiqa").level == logging.DEBUG


def test_list_models(capsys):
    assert main(["list-models"]) == 0
    out = capsys.readouterr().out
    assert "clip-iqa" in out and "ViT-B-16" in out and "test-tiny" in out


def test_entry_point_runs(folder):
    result = subprocess.run(
        [sys.executable, "-m", "mpiqa", "score", str(folder / "img1.bmp"), *TINY],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "path,score" and len(result.stdout.splitlines()) == 2
    assert "scores mean nothing" in result.stderr


def test_pyiqa_model_name_and_device_auto(folder, capsys):
    tiny = [a for a in TINY if a not in ("--backbone", "test-tiny")]
    args = ["score", str(folder), "--model", "clipiqa", "--backbone", "test-tiny", *tiny]
    assert main([*args, "--device", "auto"]) == 0
    assert len(_rows(capsys.readouterr().out)) == 4
    assert main([*args, "--device", "gpu0"]) == 2
    assert "unknown device 'gpu0'" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(folder):
    """`mpiqa score ... | head -1`: no traceback when the reader goes away."""

    script = "import sys, mpiqa.cli.main as m\nsys.exit(m.main(sys.argv[1:]))\n"
    read, write = os.pipe()
    os.close(read)  # the reader has already gone
    done = subprocess.run(
        [sys.executable, "-c", script, "score", str(folder), *TINY],
        stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
    )  # fmt: skip
    os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert done.returncode == 141


def test_bf16_scores_follow_fp32(capsys, tmp_path):
    # the default model on the example photos: bf16 autocast keeps scores and their order
    import csv as _csv
    from pathlib import Path as _Path

    examples = str(_Path(__file__).resolve().parents[2] / "examples")
    rows = {}
    for precision in ("fp32", "bf16"):
        assert main(["score", examples, "--precision", precision, "--workers", "0",
                     "--no-progress"]) == 0  # fmt: skip
        rows[precision] = {
            r["path"]: float(r["score"])
            for r in _csv.DictReader(capsys.readouterr().out.splitlines())
        }
    fp32, bf16 = rows["fp32"], rows["bf16"]
    assert fp32.keys() == bf16.keys() and len(fp32) >= 5
    keys = sorted(fp32)
    # bf16 keeps 8 bits of mantissa: the scores move (up to 0.05 here), their order holds
    assert max(abs(fp32[k] - bf16[k]) for k in keys) < 0.08
    from scipy.stats import spearmanr

    assert spearmanr([fp32[k] for k in keys], [bf16[k] for k in keys])[0] >= 0.9
    out = tmp_path / "fp16" / "scores.csv"
    assert main(["score", examples, "--precision", "fp16", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "fp16 needs a CUDA device" in captured.err
    # refused before any output: before, the CSV's header (on stdout, or a file of it)
    assert captured.out == "" and not out.parent.exists()
