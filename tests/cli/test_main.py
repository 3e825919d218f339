"""The ``mpiqa`` entry point: exit statuses and who prints under torchrun."""

from __future__ import annotations

import pytest

from mpiqa.cli.main import main


@pytest.mark.parametrize(
    "world, rank, printed",
    [(None, None, True), ("2", "0", True), ("2", "1", False), (None, "1", True)],
    ids=["one process", "first of two", "second of two", "a RANK outside torchrun"],
)
def test_only_the_first_process_prints_a_refused_argument(
    monkeypatch, capsys, world, rank, printed
):
    # torchrun gives every process the same command line, a WORLD_SIZE and a RANK
    for name, value in (("WORLD_SIZE", world), ("RANK", rank)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert main(["score", "photos/", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert ("argument --batch-size: must be from 1" in err) is printed
    assert main(["score", "--help"]) == 0
    assert ("usage: mpiqa score" in capsys.readouterr().out) is printed
