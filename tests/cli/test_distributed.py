"""torchrun with 2 CPU processes: the merged CSV equals the single-process CSV, with
nothing lost or duplicated and bad files reported once."""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpiqa.cli.main import main
from tests.data.fixtures import write_noise_images
from tests.torchrun import rerun_on_gloo_abort, torchrun, two_machines

pytestmark = rerun_on_gloo_abort  # see tests/torchrun.py

TINY = ["--backbone", "test-tiny", "--weights", "random", "--workers", "0", "--no-progress"]


def _same_scores(a: str, b: str) -> None:
    """Same rows in the same order, scores equal up to float reassociation: batches of
    another size (or another process's threads) may move the sixth decimal on some CPUs."""
    rows_a, rows_b = (list(csv.reader(io.StringIO(t))) for t in (a, b))
    assert [r[0] for r in rows_a] == [r[0] for r in rows_b] and rows_a[0] == rows_b[0]
    for ra, rb in zip(rows_a[1:], rows_b[1:], strict=True):
        assert abs(float(ra[1]) - float(rb[1])) <= 2e-6, (ra, rb)


@pytest.mark.parametrize(
    "flags, line",
    [
        # before, both processes scored every file, then the first failed to write and
        # the second died in a collective ("[rank1]: ... Connection closed by peer")
        (["--out", "{imgs}"], "--out {imgs}: is a folder"),
        # before, each process printed it (the two lines ran into one another)
        (["--checkpoint", "{imgs}/none.safetensors"], "checkpoint not found: {imgs}/none.safetensors"),
    ],
    ids=["out is a folder", "no checkpoint"],
)  # fmt: skip
def test_a_set_up_failure_stops_every_process_with_one_line(tmp_path, flags, line):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(folder / f"{i}.png")
    flags = [f.format(imgs=folder) for f in flags]
    result = torchrun(["score", str(folder), *flags, *TINY])
    assert result.returncode != 0
    assert result.stderr.count("mpiqa: error:") == 1, result.stderr[-3000:]
    assert f"mpiqa: error: {line.format(imgs=folder)}\n" in result.stderr
    assert "[rank" not in result.stderr, result.stderr[-3000:]


def test_a_run_over_two_machines_is_refused_with_one_line(tmp_path):
    # their processes could not share --out safely (appends over NFS) nor rank 0's temp folder
    write_noise_images(tmp_path / "imgs", [f"{i}.png" for i in range(3)])
    args = ["score", str(tmp_path / "imgs"), "--out", str(tmp_path / "s.csv"), *TINY]
    results = two_machines(args, (tmp_path, tmp_path))
    assert all(r.returncode != 0 for r in results)
    stderr = "".join(r.stderr for r in results)
    assert stderr.count("mpiqa: error:") == 1, stderr[-3000:]
    assert "runs on one machine (--nnodes=1); this run has 2 processes, 1 on this" in stderr
    assert not (tmp_path / "s.csv").exists()


def test_two_process_scoring_equals_single_process(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(11):  # odd count: the ranks get unequal shards
        Image.fromarray(rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8)).save(
            folder / f"img{i}.png"
        )
    (folder / "img5b.jpg").write_bytes(b"")
    single = tmp_path / "single.csv"
    assert main(["score", str(folder), "--out", str(single), *TINY]) == 1
    merged = tmp_path / "not made yet" / "merged.csv"  # made, as by one process
    result = torchrun(["score", str(folder), "--out", str(merged), *TINY])
    assert result.returncode != 0  # one file failed, and the exit status says so
    _same_scores(merged.read_text(), single.read_text())
    assert len(merged.read_text().splitlines()) == 1 + 11
    assert result.stderr.count("img5b.jpg: empty file") == 1


@pytest.mark.parametrize("earlier", [False, True], ids=["new --out", "over an earlier --out"])
def test_a_stopped_two_process_run_keeps_its_rows_and_resume_completes_them(tmp_path, earlier):
    n = 1500  # at one image per batch, seconds of scoring: time to stop it partway
    folder = write_noise_images(tmp_path / "imgs", [f"{i:04d}.png" for i in range(n)], seed=1)
    # the second process's first file is a 36-megapixel JPEG, decoded whole: the first
    # process writes rows 0000, 0002, 0004 ... before the second writes 0001
    (folder / "0001.png").unlink()
    ramp = np.tile(np.linspace(0, 255, 6000, dtype=np.uint8), (6000, 1))
    Image.fromarray(np.stack([ramp] * 3, -1)).save(folder / "0001.jpg", quality=90)
    out = tmp_path / "scores.csv"
    if earlier:  # replaced by the stopped run's rows, as one process does on SIGTERM
        out.write_text("path,score\nold.png,0.5\n")
    flags = [*TINY, "--full-decode"]
    run = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "mpiqa", "score", str(folder), "--out", str(out), *flags, "--batch-size", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while run.poll() is None and time.monotonic() < deadline:
        # the rows go into --out, or into the hidden file that replaces an earlier one
        writing = [*tmp_path.glob(".scores.csv.*partial"), out] if earlier else [out]
        if any(f.exists() and f.read_bytes().count(b"\n") >= 6 for f in writing):
            break
        time.sleep(0.01)
    assert run.poll() is None, "the run ended before it could be stopped"
    run.send_signal(signal.SIGTERM)  # as a job scheduler stops it; torchrun passes it on
    run.wait(timeout=60)
    assert not list(tmp_path.glob(".*partial*"))
    kept = list(csv.reader(io.StringIO(out.read_text())))
    assert kept[0] == ["path", "score"] and 5 <= len(kept) - 1 < n
    # rows written as they were scored (before: none until every file was scored, then
    # all in file order, so a run stopped while writing them kept a prefix of the files)
    names = [Path(row[0]).name for row in kept[1:]]
    in_order = sorted(f.name for f in folder.iterdir())
    assert names != in_order[: len(names)], names[:10]
    assert all(len(row) == 2 and 0 <= float(row[1]) <= 1 for row in kept[1:-1])
    assert "old.png" not in names
    assert main(["score", str(folder), "--out", str(out), "--resume", *flags]) == 0
    single = tmp_path / "single.csv"
    assert main(["score", str(folder), "--out", str(single), *flags]) == 0

    def by_path(text: str) -> str:
        rows = list(csv.reader(io.StringIO(text)))
        return "".join(",".join(r) + "\n" for r in [rows[0], *sorted(rows[1:])])

    _same_scores(by_path(out.read_text()), by_path(single.read_text()))


def test_two_process_resume_completes_the_file_in_file_order(tmp_path):
    folder = write_noise_images(tmp_path / "imgs", [f"img{i}.png" for i in range(9)], seed=2)
    # an earlier run that scored three of the nine, one row's score marked: a resumed
    # file keeps its rows as they are
    out = tmp_path / "scores.csv"
    first = [str(folder / f"img{i}.png") for i in (1, 4, 5)]
    assert main(["score", *first, "--out", str(out), *TINY]) == 0
    marked = [[p, "0.123456" if p == first[1] else s] for p, s in _rows(out)]
    out.write_text("".join(",".join(r) + "\n" for r in marked))
    # before, refused: "--resume runs in one process (not under torchrun)"
    result = torchrun(["-vv", "score", str(folder), "--out", str(out), "--resume", *TINY])
    assert result.returncode == 0, result.stderr[-3000:]
    # one line for the run, and the first process's progress lines only (before, each
    # process printed its own: the same lines twice)
    assert result.stderr.count(f"scored 6 file(s) into {out} (3 already there)") == 1
    assert result.stderr.count("mpiqa: DEBUG: malloc tuned for large tensors") == 1
    assert dict(_rows(out)[1:])[first[1]] == "0.123456"  # not scored again
    # the earlier rows first, then the others in file order: what one process writes
    assert main(["score", *first, "--out", str(tmp_path / "one.csv"), *TINY]) == 0
    assert main(["score", str(folder), "--out", str(tmp_path / "one.csv"), "--resume", *TINY]) == 0
    expected = [[p, "0.123456" if p == first[1] else s] for p, s in _rows(tmp_path / "one.csv")]
    _same_scores(out.read_text(), "".join(",".join(r) + "\n" for r in expected))


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))
