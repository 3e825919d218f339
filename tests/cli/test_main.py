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


@pytest.mark.parametrize(
    "argv",
    [["finetune", "labels.csv", "--out", "run"], ["list-models"], ["evaluate", "--help"]],
    ids=["finetune", "list-models", "help"],
)
@pytest.mark.parametrize("rank, printed", [("0", True), ("1", False)], ids=["first", "second"])
def test_commands_that_run_in_one_process_refuse_torchrun(
    monkeypatch, capsys, tmp_path, argv, rank, printed
):
    # before, each of torchrun's processes fine-tuned on all the labels, N times over,
    # printed its result and wrote the same run folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    if argv[-1] == "--help":  # help is printed (by the first process), nothing refused
        assert main(argv) == 0
        assert ("usage: mpiqa evaluate" in capsys.readouterr().out) is printed
        return
    assert main(argv) == 2
    out, err = capsys.readouterr()
    line = (
        f"mpiqa: error: mpiqa {argv[0]} runs in one process: start it without torchrun, "
        "or unset WORLD_SIZE (it says 2 processes)"
    )
    assert out == "" and (line in err) is printed and err.count("\n") == int(printed)
    assert not (tmp_path / "run").exists()
    monkeypatch.delenv("WORLD_SIZE")
    assert main(["list-models"]) == 0  # the same command outside torchrun
