"""Which failures are the user's (one line) and, under torchrun, who reports them."""

from __future__ import annotations

import errno
import multiprocessing

import pytest

from mpiqa import distributed
from mpiqa.backbones.convert import CheckpointError
from mpiqa.errors import reported_once, user_message
from tests.torchrun import rerun_on_gloo_abort


@pytest.mark.parametrize(
    "err, line",
    [
        (ValueError("--batch-size must be positive"), "--batch-size must be positive"),
        (KeyError("no model 'x'"), "no model 'x'"),  # not repr's quotes around it
        (FileNotFoundError("label file not found: a.csv"), "label file not found: a.csv"),
        (CheckpointError("w.pt: not a checkpoint"), "w.pt: not a checkpoint"),
        (OSError(errno.ENOSPC, "No space left on device", "out.csv"), "out.csv: No space left on device"),
        (OSError(errno.EIO, "Input/output error"), None),  # the machine failing: a traceback
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), None),
        (TypeError("a bug"), None),
    ],
)  # fmt: skip
def test_user_message(err, line):
    assert user_message(err) == line


def test_one_process_raises_what_it_met():
    with pytest.raises(ValueError, match="^bad$"), reported_once(distributed.Context()):
        raise ValueError("bad")
    with pytest.raises(TypeError), reported_once(distributed.Context()):
        raise TypeError("a bug")


def _worker(rank: int, store: str, fail_on: tuple[int, ...], results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        with reported_once(distributed.Context(rank, 2, rank)):
            if rank in fail_on:
                raise FileNotFoundError(f"missing on {rank}")
        results.put((rank, "ok"))
    except distributed.ReportedByFirstProcess:
        results.put((rank, "quiet"))
    except (FileNotFoundError, ValueError) as err:
        results.put((rank, f"{type(err).__name__}: {err}"))
    finally:
        dist.destroy_process_group()


@rerun_on_gloo_abort
@pytest.mark.parametrize(
    "fail_on, expected",
    [
        ((), {0: "ok", 1: "ok"}),
        ((0, 1), {0: "FileNotFoundError: missing on 0", 1: "quiet"}),  # its own, once
        ((1,), {0: "ValueError: process 1: missing on 1", 1: "quiet"}),  # the other's
        ((0,), {0: "FileNotFoundError: missing on 0", 1: "quiet"}),  # no process goes on
    ],
)
def test_two_processes_report_a_set_up_failure_once(tmp_path, fail_on, expected):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(r, str(tmp_path / "store"), fail_on, results))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert got == expected
