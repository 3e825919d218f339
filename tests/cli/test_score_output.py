"""``mpiqa score --out``: no finished score is lost (interruptions, SIGTERM, failed
writes), ``--resume`` completes a file without rescoring or duplicating, one writer at
a time, and any file name round-trips."""

from __future__ import annotations

import csv
import io
import os
import signal

import numpy as np
import pytest
from PIL import Image

from mpiqa.cli import score as score_cmd
from mpiqa.cli.main import main
from mpiqa.cli.score_output import CSVOutput, OutputError
from tests.data.fixtures import write_noise_images

TINY = ["--backbone", "test-tiny", "--weights", "random", "--workers", "0", "--no-progress"]


def _rows(path):
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.reader(f))


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
            folder / f"img{i:02d}.png"
        )
    return folder


def _interrupting(after: int, how: str):
    """score_files that yields ``after`` results, then is interrupted."""
    real = score_cmd.score_files

    def fake(model, paths, **kwargs):
        for i, result in enumerate(real(model, paths, **kwargs)):
            if i == after:
                if how == "sigterm":
                    os.kill(os.getpid(), signal.SIGTERM)
                raise KeyboardInterrupt
            yield result

    return fake


@pytest.mark.parametrize("how", ["sigint", "sigterm"])
def test_interrupted_run_keeps_its_rows_and_resume_completes_them(
    photos, tmp_path, monkeypatch, how
):
    clean = tmp_path / "clean.csv"
    assert main(["score", str(photos), "--out", str(clean), *TINY]) == 0
    out = tmp_path / "s.csv"
    monkeypatch.setattr(score_cmd, "score_files", _interrupting(5, how))
    assert main(["score", str(photos), "--out", str(out), *TINY]) == 130
    rows = _rows(out)
    assert rows[0] == ["path", "score"] and len(rows) == 1 + 5
    monkeypatch.undo()
    assert main(["score", str(photos), "--out", str(out), "--resume", *TINY]) == 0
    assert sorted(_rows(out)[1:]) == sorted(_rows(clean)[1:])  # 12 distinct rows, same scores
    assert not list(tmp_path.glob(".s.csv.*.partial"))


def test_resume_drops_a_row_cut_off_by_a_hard_kill(photos, tmp_path):
    out = tmp_path / "s.csv"
    assert main(["score", str(photos), "--out", str(out), *TINY]) == 0
    full = _rows(out)
    text = out.read_text()
    out.write_text(text[: text.rfind("\n", 0, len(text) - 1) + 1] + full[-1][0][:7])  # half a row
    assert main(["score", str(photos), "--out", str(out), "--resume", *TINY]) == 0
    assert _rows(out) == full


def test_resume_knows_a_file_by_any_form_of_its_path(photos, tmp_path, monkeypatch, capsys):
    # the first run named the folder one way, the resume another: before, every file
    # was scored again and listed twice
    monkeypatch.chdir(photos.parent)
    out = tmp_path / "s.csv"
    first = ["photos/img00.png", "./photos/img01.png", str(photos / "img02.png")]
    assert main(["score", *first, "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["-v", "score", "./photos/", "--out", str(out), "--resume", *TINY]) == 0
    assert f"scored 9 file(s) into {out} (3 already there)" in capsys.readouterr().err
    names = [os.path.basename(row[0]) for row in _rows(out)[1:]]
    assert sorted(names) == sorted(f"img{i:02d}.png" for i in range(12))  # none twice


def test_resume_with_other_settings_is_refused(photos, tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["score", str(photos), "--out", str(out), *TINY]) == 0
    before = out.read_bytes()
    assert main(["score", str(photos), "--out", str(out), "--resume", *TINY, "--seed", "3"]) == 2
    assert "other settings (seed)" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_a_failed_run_leaves_the_earlier_file_intact(photos, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.csv"
    assert main(["score", str(photos), "--out", str(out), *TINY]) == 0
    before = out.read_bytes()
    calls = {"n": 0}
    real_write = CSVOutput.write

    def failing(self, row):
        calls["n"] += 1
        if calls["n"] > 4:
            raise OutputError(f"cannot write {self.path}: No space left on device")
        real_write(self, row)

    monkeypatch.setattr(CSVOutput, "write", failing)
    assert main(["score", str(photos), "--out", str(out), *TINY, "--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err
    assert out.read_bytes() == before
    # the rows written before the failure are kept for --resume, as after a hard kill
    (kept,) = tmp_path.glob(".s.csv.*.partial")
    assert len(_rows(kept)) == 1 + 3 and f"rows so far are kept in {kept}" in err
    monkeypatch.undo()
    args = ["-v", "score", str(photos), "--out", str(out), "--resume", *TINY, "--seed", "5"]
    assert main(args) == 0
    assert "(3 already there)" in capsys.readouterr().err
    again = tmp_path / "again.csv"
    assert main(["score", str(photos), "--out", str(again), *TINY, "--seed", "5"]) == 0
    assert _rows(out) == _rows(again)
    assert not list(tmp_path.glob(".s.csv.*.partial"))


def test_a_failure_before_any_row_leaves_no_hidden_file(photos, tmp_path, monkeypatch):
    out = tmp_path / "s.csv"
    assert main(["score", str(photos), "--out", str(out), *TINY]) == 0
    before = out.read_bytes()
    monkeypatch.setattr(score_cmd, "score_files", _crashing(0))
    with pytest.raises(RuntimeError, match="power cut"):
        main(["score", str(photos), "--out", str(out), *TINY])
    assert out.read_bytes() == before
    assert not list(tmp_path.glob(".s.csv.*.partial*"))  # nor its settings beside it


def test_rows_are_kept_when_the_earlier_file_cannot_be_replaced(
    photos, tmp_path, monkeypatch, capsys
):
    """On Windows a --out open in another program (a spreadsheet) cannot be replaced:
    the run's rows stay in the hidden file, and --resume puts them into --out."""
    out = tmp_path / "s.csv"
    assert main(["score", str(photos), "--out", str(out), *TINY]) == 0
    before = out.read_bytes()
    (tmp_path / "before.csv").write_bytes(before)
    real_replace = os.replace

    def held_open(src, dst):
        if str(dst) == str(out):
            raise PermissionError(13, "Permission denied", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", held_open)
    assert main(["score", str(photos), "--out", str(out), *TINY, "--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert f"cannot replace {out} (Permission denied; is it open in another program?)" in err
    assert out.read_bytes() == before
    (kept,) = tmp_path.glob(".s.csv.*.partial")
    assert len(_rows(kept)) == 1 + 12 and str(kept) in err
    monkeypatch.undo()
    capsys.readouterr()
    args = ["-v", "score", str(photos), "--out", str(out), "--resume", *TINY, "--seed", "5"]
    assert main(args) == 0
    assert "(12 already there)" in capsys.readouterr().err  # nothing scored again
    assert not list(tmp_path.glob(".s.csv.*.partial"))
    again = tmp_path / "again.csv"
    assert main(["score", str(photos), "--out", str(again), *TINY, "--seed", "5"]) == 0
    assert _rows(out) == _rows(again) != _rows(tmp_path / "before.csv")


def test_a_second_writer_is_refused(photos, tmp_path, capsys):
    import subprocess
    import sys

    out = tmp_path / "s.csv"
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\n"
            "from mpiqa.cli.score_output import CSVOutput\n"
            "with CSVOutput(sys.argv[1], ['path', 'score'], {}, resume=False):\n"
            "    print('writing', flush=True)\n"
            "    time.sleep(60)\n"
        ), str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "writing"
        assert main(["score", str(photos), "--out", str(out), *TINY]) == 2
        assert "another mpiqa run is writing it" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its holder, even killed
    assert main(["score", str(photos), "--out", str(out), *TINY]) == 0


def test_out_into_a_folder_not_made_yet(photos, tmp_path, capsys):
    out = tmp_path / "results" / "today" / "s.csv"
    assert main(["score", str(photos), "--out", str(out), *TINY]) == 0
    assert len(_rows(out)) == 1 + 12
    (tmp_path / "a file").write_text("")
    assert main(["score", str(photos), "--out", str(tmp_path / "a file" / "s.csv"), *TINY]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_any_file_name_round_trips(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    names = ["line\rbreak.png", 'quote"and,comma.png', "new\nline.png"]
    raw = os.fsencode(str(folder)) + b"/caf\xe9.png"  # not UTF-8
    image = Image.new("RGB", (40, 40), (10, 200, 30))
    for name in names:
        image.save(folder / name)
    with open(raw, "wb") as f:
        image.save(f, format="PNG")
    out = tmp_path / "s.csv"
    assert main(["score", str(folder), "--out", str(out), *TINY]) == 0
    written = {row[0] for row in _rows(out)[1:]}
    expected = {str(folder / n) for n in names} | {os.fsdecode(raw)}
    assert written == expected


def test_resume_needs_out_and_a_record(photos, tmp_path, capsys):
    assert main(["score", str(photos), "--resume", *TINY]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("path,score\n")
    assert main(["score", str(photos), "--out", str(foreign), "--resume", *TINY]) == 2
    assert "no record of how it was scored" in capsys.readouterr().err
    assert foreign.read_text() == "path,score\n"


def _crashing(after: int):
    """score_files that yields ``after`` results, then fails as a bug would."""
    real = score_cmd.score_files

    def fake(model, paths, **kwargs):
        for i, result in enumerate(real(model, paths, **kwargs)):
            if i == after:
                raise RuntimeError("power cut")
            yield result

    return fake


@pytest.mark.parametrize("earlier", [False, True])
def test_a_crashed_run_leaves_rows_that_resume_completes(photos, tmp_path, monkeypatch, earlier):
    """A crash (an exception nothing handles) keeps the rows scored so far for --resume:
    in --out itself when there was none, else in the hidden file beside the earlier
    --out, which stays as it was (before: that hidden file was deleted)."""
    clean = tmp_path / "clean.csv"
    assert main(["score", str(photos), "--out", str(clean), *TINY]) == 0
    out = tmp_path / "s.csv"
    if earlier:
        out.write_text("path,score\n")
    monkeypatch.setattr(score_cmd, "score_files", _crashing(4))
    with pytest.raises(RuntimeError, match="power cut"):
        main(["score", str(photos), "--out", str(out), *TINY])
    if earlier:
        assert out.read_text() == "path,score\n"
        (kept,) = tmp_path.glob(".s.csv.*.partial")
        assert len(_rows(kept)) == 1 + 4
    else:
        assert len(_rows(out)) == 1 + 4
    monkeypatch.undo()
    assert main(["score", str(photos), "--out", str(out), "--resume", *TINY]) == 0
    assert sorted(_rows(out)[1:]) == sorted(_rows(clean)[1:])
    assert not list(tmp_path.glob(".s.csv.*.partial"))


def test_sort_score_puts_the_worst_first(photos, tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["score", str(photos), "--out", str(out), "--sort", "score", *TINY]) == 0
    rows = _rows(out)
    scores = [float(r[1]) for r in rows[1:]]
    assert rows[0] == ["path", "score"] and len(scores) == 12 and scores == sorted(scores)
    capsys.readouterr()
    assert main(["score", str(photos), "--sort", "score", *TINY]) == 0
    assert list(csv.reader(io.StringIO(capsys.readouterr().out))) == rows
    # a sorted file still resumes (rows are matched by path)
    assert main(["score", str(photos), "--out", str(out), "--resume", *TINY]) == 0
    assert len(_rows(out)) == 13


def test_a_run_killed_over_an_earlier_out_is_resumed_from_its_own_rows(tmp_path, capsys):
    """kill -9 (or the kernel's out-of-memory killer) leaves no time to keep the rows:
    over an earlier --out they stay in the hidden file; the next run names it, and
    --resume with the same options takes it up (before: it completed the earlier file,
    and the killed run's rows were left behind)."""
    import subprocess
    import sys
    import time

    names = [f"{i:03d}.png" for i in range(600)]
    folder = write_noise_images(tmp_path / "many", names, size=(16, 16), seed=3)
    out = tmp_path / "s.csv"
    out.write_text("path,score\nyesterday.png,0.5\n")  # an earlier --out (not mpiqa's)
    flags = [*TINY, "--batch-size", "1"]
    run = subprocess.Popen(
        [sys.executable, "-m", "mpiqa", "score", str(folder), "--out", str(out), *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while run.poll() is None and time.monotonic() < deadline:
        if any(f.read_bytes().count(b"\n") >= 6 for f in tmp_path.glob(".s.csv.*.partial")):
            break
        time.sleep(0.01)
    assert run.poll() is None, "the run ended before it could be killed"
    run.kill()
    run.wait(timeout=60)
    (orphan,) = tmp_path.glob(".s.csv.*.partial")
    assert out.read_text() == "path,score\nyesterday.png,0.5\n"
    # another run over --out (other options) says where the rows are, and leaves them
    assert main(["score", str(folder), "--out", str(tmp_path / "other.csv"), *flags]) == 0
    capsys.readouterr()
    assert main(["score", str(folder / "000.png"), "--out", str(out), *TINY, "--seed", "4"]) == 0
    assert f"{orphan} holds" in capsys.readouterr().err and orphan.exists()
    # that run finished after the killed one: a resume keeps its file (the killed run's
    # is older), and refuses it for its other settings
    later = out.read_bytes()
    assert main(["score", str(folder), "--out", str(out), "--resume", *flags]) == 2
    assert "other settings (seed)" in capsys.readouterr().err and out.read_bytes() == later
    # with --out older than the killed run (as it was when that run began), resume takes
    # the killed run's rows up
    out.write_text("path,score\nyesterday.png,0.5\n")
    before = orphan.stat().st_mtime - 60
    os.utime(out, (before, before))
    kept = orphan.read_bytes().count(b"\n") - 1
    assert main(["score", str(folder), "--out", str(out), "--resume", *flags]) == 0
    rows = _rows(out)
    assert "yesterday.png" not in {r[0] for r in rows}
    assert sorted(rows[1:]) == sorted(_rows(tmp_path / "other.csv")[1:]) and kept >= 5
    assert not list(tmp_path.glob(".s.csv.*partial*"))


# Windows has neither fcntl nor resource, nor os.fchmod before Python 3.13, and locks a
# file with msvcrt.locking (an OSError when another process holds it). This stand-in
# hides the first three and locks as msvcrt's would, with a POSIX lock underneath.
_WITHOUT_POSIX_MODULES = """
import fcntl as posix_fcntl, os, sys, types
sys.modules.update(fcntl=None, resource=None)
del os.fchmod
import subprocess, torch  # before msvcrt is there: the standard library takes it for Windows
msvcrt = types.ModuleType("msvcrt")
msvcrt.LK_NBLCK = 2
def locking(fd, mode, nbytes):
    assert mode == msvcrt.LK_NBLCK and nbytes == 1, (mode, nbytes)
    posix_fcntl.lockf(fd, posix_fcntl.LOCK_EX | posix_fcntl.LOCK_NB)
msvcrt.locking = locking
sys.modules["msvcrt"] = msvcrt
from mpiqa.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_score_out_works_without_posix_only_modules(photos, tmp_path):
    import fcntl
    import subprocess
    import sys

    def run(*args):
        return subprocess.run(
            [sys.executable, "-c", _WITHOUT_POSIX_MODULES, *args],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    expected = tmp_path / "expected.csv"
    assert main(["score", str(photos), "--out", str(expected), *TINY]) == 0
    out = tmp_path / "s.csv"
    for _ in range(2):  # a new file, then one over it (written beside it, then renamed)
        done = run("score", str(photos), "--out", str(out), *TINY)
        assert done.returncode == 0, done.stderr
        assert _rows(out) == _rows(expected)
    with open(tmp_path / ".s.csv.lock", "a") as held:
        fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = run("score", str(photos), "--out", str(out), *TINY)
    assert done.returncode == 2 and "another mpiqa run is writing it" in done.stderr
    # the commands that measure memory say nothing of it where it cannot be measured
    done = run("benchmark", "--arch", "test-tiny", "--batch-size", "2", "--iters", "1",
               "--warmup", "0", "--no-compare")  # fmt: skip
    assert done.returncode == 0 and "TFLOP/s" in done.stdout and "RSS" not in done.stdout
