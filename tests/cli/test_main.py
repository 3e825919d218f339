"""The ``mpiqa`` entry point: exit statuses and who prints under torchrun."""

from __future__ import annotations

import pytest

from mpiqa.cli.main import main


@pytest.mark.parametrize("rank, printed", [(None, True), ("0", True), ("1", False)])
def test_only_the_first_process_prints_a_refused_argument(monkeypatch, capsys, rank, printed):
    # torchrun gives every process the same command line, and a RANK
    if rank is not None:
        monkeypatch.setenv("RANK", rank)
    else:
        monkeypatch.delenv("RANK", raising=False)
    assert main(["score", "photos/", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert ("argument --batch-size: must be from 1" in err) is printed
    assert main(["score", "--help"]) == 0
    assert ("usage: mpiqa score" in capsys.readouterr().out) is printed
