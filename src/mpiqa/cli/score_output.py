"""The CSV that ``mpiqa score --out`` writes, so that no finished score is lost.

- A new run writes the header at once and flushes every row as it is scored: into
  ``--out`` itself when there is no such file yet (so even ``kill -9`` leaves a file
  that ``--resume`` completes), else into a hidden ``.NAME.*.partial`` file beside it
  that replaces it by a rename when the run ends or is interrupted (SIGINT, SIGTERM).
  A run that fails (disk full, a write error, a crash) leaves an earlier ``--out`` as
  it was, and its rows so far in the hidden file for ``--resume``.
- ``--resume`` appends to an existing ``--out`` the rows of the files it lacks (a file
  counts as there whatever form its path was given in: ``./a.jpg``, ``a.jpg`` and its
  absolute path are one file, from the same working folder). How the file was scored
  (model, weights, crop ...) is kept beside it (``.NAME.mpiqa.json``); a resume with
  other settings is refused.
- A run killed outright (``kill -9``, out of memory, power lost) over an earlier
  ``--out`` leaves its rows in the hidden file; the next ``--resume`` with the same
  settings takes that file as the one to complete, and any other run says it is there.
- One process at a time: a second run on the same ``--out`` is refused (a lock file).
- A run that cannot replace an earlier ``--out`` at its end (on Windows, a file open in
  another program) keeps its rows in the hidden file for ``--resume``.
- Folders of ``--out`` that do not exist yet are made.
- File names round-trip: bytes that are not UTF-8 are written as they are
  (``surrogateescape``), and fields with a CR, LF or quote are quoted.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import os
from pathlib import Path

from mpiqa.atomic import atomic_write, temp_beside

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)


class OutputError(ValueError):
    """The output cannot be written or resumed (one line for the user)."""


def _hidden(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}{suffix}")


class CSVOutput:
    """Args:
    path: the ``--out`` file.
    header: its columns.
    settings: what decides the scores (compared on ``resume``).
    resume: append to ``path`` instead of replacing it.

    Attributes:
        done: on ``resume``, the :func:`file_key` of every file the file has a row for.
    """

    def __init__(self, path: str | Path, header: list[str], settings: dict, resume: bool) -> None:
        self.path = Path(path)
        self.header = header
        self.settings = {**settings, "columns": header}
        self.resume = resume and self.path.exists()
        self.done: set[str] = set()
        self._file = None
        self._lock = None
        self._tmp: Path | None = None
        self._good_size = 0
        self._closed = False

    # ------------------------------------------------------------------ opening
    def __enter__(self) -> CSVOutput:
        if self.path.is_dir():
            raise OutputError(f"--out {self.path}: is a folder")
        if self.path.exists() and not self.path.is_file():
            # a device or FIFO would be replaced by the final rename (as root, /dev/full
            # itself); rows for a pipe go to stdout
            raise OutputError(
                f"--out {self.path}: not a regular file; leave out --out to write to stdout"
            )
        try:
            # `--out results/today.csv` into a folder not made yet, as train's --out
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise OutputError(
                f"--out {self.path}: a part of {self.path.parent} is a file, not a folder"
            ) from None
        except OSError as err:
            raise OutputError(f"--out {self.path}: {err.strerror or err}") from None
        try:
            self._take_lock()
            self._adopt_killed_run()
            if self.resume:
                self._open_for_resume()
            else:
                self._open_new()
        except OSError as err:
            self._release()
            raise OutputError(f"--out {self.path}: {err.strerror or err}") from None
        except OutputError:
            self._release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._closed:
            return
        if exc_type is None:
            self.finish()
        else:
            self.abort()

    def _take_lock(self) -> None:
        self._lock = open(_hidden(self.path, ".lock"), "a")  # noqa: SIM115 (held for the run)
        try:
            if fcntl is not None:
                # a POSIX record lock: released when this process dies, and not inherited
                # by the decoding workers it forks (flock's would outlive a killed parent)
                fcntl.lockf(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # Windows: a lock on the file's first byte, released when the process dies
                import msvcrt

                msvcrt.locking(self._lock.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            self._lock.close()
            self._lock = None
            raise OutputError(f"--out {self.path}: another mpiqa run is writing it") from None

    def _killed_runs(self) -> list[Path]:
        """Hidden files of earlier runs over ``path`` that ended (killed, failed) before
        they could keep their rows (with the lock held, no running mpiqa writes one),
        newest last."""
        pattern = f".{glob.escape(self.path.name)}.*.partial"
        return sorted(self.path.parent.glob(pattern), key=lambda p: p.stat().st_mtime)

    def _adopt_killed_run(self) -> None:
        """On ``resume``, the newest killed run's file with these settings becomes
        ``path`` (that run was to replace it; it is the one to complete), if it is newer
        than ``path`` (a later run that finished replaced ``path`` itself: its rows are
        kept). Otherwise each such file is named in a warning, and left as it is."""
        killed = self._killed_runs()
        if self.resume and killed:
            since = self.path.stat().st_mtime
            same = [
                p
                for p in killed
                if p.stat().st_mtime >= since and _read_json(_settings_of(p)) == self.settings
            ]
            if same:
                os.replace(same[-1], self.path)
                os.replace(_settings_of(same[-1]), _hidden(self.path, ".mpiqa.json"))
                logger.info(
                    "resuming %s: the rows of a run that ended before it could keep them",
                    same[-1].name,
                )
                killed.remove(same[-1])
        for orphan in killed:
            rows = max(orphan.read_bytes().count(b"\n") - 1, 0)
            logger.warning(
                "%s holds %d row(s) of a run over --out %s that ended before it could "
                "keep them: `--resume` with that run's options completes them into --out; "
                "delete the file if it is not wanted", orphan, rows, self.path,
            )  # fmt: skip

    def _open_new(self) -> None:
        if self.path.exists():
            # an earlier file stays until this run has ended: write beside it, rename last;
            # its settings beside it, so a resume after a hard kill can take it up
            self._tmp = temp_beside(self.path, ".partial")
            _settings_of(self._tmp).write_text(json.dumps(self.settings, indent=1))
            target = str(self._tmp)
        else:
            # nothing to protect: write in place, so even a hard kill leaves a file that
            # --resume completes
            self._write_settings()
            target = str(self.path)
        self._file = open(target, "w", newline="", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        self.write(self.header)

    def _open_for_resume(self) -> None:
        meta = _hidden(self.path, ".mpiqa.json")
        if not meta.is_file():
            raise OutputError(
                f"--resume: {self.path} has no record of how it was scored ({meta.name}); "
                "score again without --resume"
            )
        recorded = json.loads(meta.read_text())
        if recorded != self.settings:
            changed = sorted(k for k in set(recorded) | set(self.settings)
                             if recorded.get(k) != self.settings.get(k))  # fmt: skip
            raise OutputError(
                f"--resume: {self.path} was scored with other settings ({', '.join(changed)}); "
                "use the same options, or another --out"
            )
        with open(self.path, "rb") as f:
            data = f.read()
        # a row cut off by a hard kill is dropped: it is scored again
        self._good_size = data.rfind(b"\n") + 1
        text = data[: self._good_size].decode("utf-8", errors="surrogateescape")
        rows = list(csv.reader(text.splitlines(keepends=True)))
        if not rows or rows[0] != self.header:
            raise OutputError(f"--resume: {self.path} does not start with the header {self.header}")
        self.done = {file_key(row[0]) for row in rows[1:] if row}
        self._file = open(self.path, "r+", newline="", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        self._file.truncate(self._good_size)
        self._file.seek(self._good_size)

    # ------------------------------------------------------------------ writing
    @property
    def writing(self) -> Path:
        """The file the rows go into: ``path``, or the hidden file that replaces it."""
        return self._tmp if self._tmp is not None else self.path

    def write(self, row: list[str]) -> None:
        """Write one row and flush it to the operating system."""
        try:
            self._file.write(csv_line(row))
            self._file.flush()
        except OSError as err:
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None

    # ------------------------------------------------------------------ closing
    def finish(self) -> None:
        """Keep what was written: the new file becomes ``path`` (once: later calls, and
        :meth:`abort` after it, do nothing)."""
        if self._closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as err:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None
        try:
            if self._tmp is not None:
                try:
                    os.replace(self._tmp, self.path)
                except OSError as err:
                    # on Windows, a --out open in another program cannot be replaced; the
                    # rows stay in the hidden file for --resume, as after any failure
                    self.abort()
                    raise OutputError(
                        f"cannot replace {self.path} ({err.strerror or err}; is it open in "
                        "another program?)"
                    ) from None
                _settings_of(self._tmp).unlink(missing_ok=True)
                self._tmp = None
                self._write_settings()
        except OSError as err:
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None
        finally:
            self._release()

    def _write_settings(self) -> None:
        _hidden(self.path, ".mpiqa.json").write_text(json.dumps(self.settings, indent=1))

    def abort(self) -> None:
        """A failed run: an earlier ``path`` stays as it was. The rows this run wrote stay
        in its hidden file, named in a warning, for ``--resume`` to take up (as after a
        hard kill); a hidden file without a row is removed."""
        if self._closed:
            return
        try:
            if self._file is not None and not self._file.closed:
                self._file.close()
        except OSError:
            pass
        if self._tmp is not None:
            header = len(csv_line(self.header).encode("utf-8", errors="surrogateescape"))
            try:  # rows of this process or (under torchrun) the others
                has_rows = self._tmp.stat().st_size > header
            except OSError:
                has_rows = False
            if has_rows:
                logger.warning(
                    "this run's rows so far are kept in %s: `--resume` with the same options "
                    "puts them into --out %s", self._tmp, self.path,
                )  # fmt: skip
            else:
                self._tmp.unlink(missing_ok=True)
                _settings_of(self._tmp).unlink(missing_ok=True)
            self._tmp = None
        self._release()

    def _release(self) -> None:
        self._closed = True
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _settings_of(partial: Path) -> Path:
    """Where a hidden run file's settings are kept (``.NAME.XXXX.partial.json``)."""
    return partial.with_name(partial.name + ".json")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def file_key(path: str) -> str:
    """What tells files apart on ``--resume``: the path made absolute and normal (a
    run given ``photos/`` writes ``photos/a.jpg``; one given ``./photos`` or the
    absolute path asks for the same file)."""
    return os.path.abspath(path)


def csv_line(row: list[str]) -> str:
    """One CSV row as written here, its newline included."""
    out = io.StringIO()
    # csv quotes LF and quotes, not a lone CR
    quoting = csv.QUOTE_ALL if any("\r" in field for field in row) else csv.QUOTE_MINIMAL
    csv.writer(out, lineterminator="\n", quoting=quoting).writerow(row)
    return out.getvalue()


class RowAppender:
    """Rows appended to a file that other processes append to as well (torchrun's ranks
    writing one ``--out``): each row is one ``write`` to a descriptor opened with
    ``O_APPEND``, so rows of different processes never mix within a line (on a local
    file system; not on NFS)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as err:
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None

    def write(self, row: list[str]) -> None:
        data = csv_line(row).encode("utf-8", errors="surrogateescape")
        try:
            while data:  # a regular file takes it whole unless the disk is full
                data = data[os.write(self._fd, data) :]
        except OSError as err:
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def sort_file(path: str | Path, order) -> None:
    """Rewrite a finished CSV with its data rows in ``order(rows)``, atomically.

    Raises:
        OutputError: it cannot be read or written.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = list(csv.reader(f))

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
                f.write(csv_line(rows[0]))
                f.writelines(csv_line(row) for row in order(rows[1:]))

        atomic_write(path, write)
    except OSError as err:
        raise OutputError(f"cannot sort {path}: {err.strerror or err}") from None
