"""Failures of the user's setup, as the ``mpiqa`` command reports them: one line, exit 2.

A missing file, a bad argument value, an unreadable checkpoint, a full disk are the
user's to fix and get one line without a traceback; anything else is a bug and keeps
its traceback. Under torchrun, :func:`reported_once` makes an error of the set-up that
every process meets (a missing checkpoint, a bad path) one line, not one per process.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Iterator

from mpiqa import distributed, runtime
from mpiqa.backbones.convert import CheckpointError
from mpiqa.backbones.pretrained import ChecksumError

logger = logging.getLogger(__name__)

# OSErrors that describe the user's machine rather than a bug
_SETUP_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
     errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EEXIST}
)  # fmt: skip


def user_message(err: BaseException) -> str | None:
    """The line to print for an expected failure of the user's setup; None for a bug
    (or an interruption), which the caller lets through."""
    if isinstance(err, (FileNotFoundError, KeyError, CheckpointError, ChecksumError, ValueError)):
        return err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    if isinstance(err, runtime.MissingExtraError):
        return str(err)  # a set-up step, not a bug
    if isinstance(err, OSError) and not isinstance(err, BrokenPipeError):
        if err.errno in _SETUP_ERRNOS:  # a full disk, a read-only or forbidden folder
            where = f"{err.filename}: " if err.filename else ""
            return f"{where}{err.strerror or err}"
    return None


@contextlib.contextmanager
def reported_once(context: distributed.Context) -> Iterator[None]:
    """Run a block of a command's set-up so that an expected failure of it is reported
    by the first process alone. Every process runs the block; a collective inside it
    must come before anything that can fail on one process only (a process that failed
    earlier would not join it).

    Every process gathers the others' outcome at the end of the block (one collective,
    also when all went well). If any failed, the first process raises its own error (or,
    when it had none, a ValueError with the first failing process's line) after
    logging the other processes' lines that differ from it; the others raise
    :class:`~mpiqa.distributed.ReportedByFirstProcess`. A bug (an exception that
    :func:`user_message` does not describe) is raised as it is, where it happened.
    """
    if not context.active:
        yield
        return
    own: BaseException | None = None
    try:
        yield
    except Exception as err:
        if user_message(err) is None:
            raise
        own = err
    lines = distributed.gather_objects(user_message(own) if own else None, context)
    failed = [(rank, line) for rank, line in enumerate(lines) if line is not None]
    if not failed:
        return
    if not context.is_main:
        raise distributed.ReportedByFirstProcess() from own
    first = lines[0] if lines[0] is not None else failed[0][1]
    for rank, line in failed:
        if line != first:
            logger.error("process %d: %s", rank, line)
    if own is not None:
        raise own
    raise ValueError(f"process {failed[0][0]}: {first}")
