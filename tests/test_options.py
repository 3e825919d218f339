"""Options from plain dicts and from KEY=VALUE flags."""

from __future__ import annotations

import pytest

from mpiqa.data import load_dataset
from mpiqa.options import parse_key_values


def test_key_values_read_json_lists_and_text():
    options = parse_key_values(
        ["scale=1,5", "lower_better=true", "csv_file=my labels.csv", "n=3"], "--dataset-option"
    )
    assert options == {"scale": [1, 5], "lower_better": True, "csv_file": "my labels.csv", "n": 3}
    with pytest.raises(ValueError, match="--dataset-option 'scale': expected KEY=VALUE"):
        parse_key_values(["scale"], "--dataset-option")


def test_csv_adapter_takes_its_options_and_names_unknown_ones(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "mos.csv").write_text("file,dmos\na.png,1\nb.png,5\n")
    options = parse_key_values(
        ["csv_file=mos.csv", "path_column=file", "score_column=dmos", "scale=0,10",
         "lower_better=true"], "--dataset-option",
    )  # fmt: skip
    dataset = load_dataset("csv", tmp_path, **options)
    scores = {r.key: round(r.score, 3) for r in dataset}
    assert scores == {"a.png": 0.9, "b.png": 0.5}
    with pytest.raises(ValueError, match=r"unknown dataset option\(s\) \['column'\]"):
        load_dataset("csv", tmp_path, column="x")


def _csv(tmp_path, text: str, name: str = "labels.csv"):
    for image in ("a.png", "b.png"):
        (tmp_path / image).write_bytes(b"")
    (tmp_path / name).write_bytes(text.encode("latin-1") if "é" in text else text.encode())
    return tmp_path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,score\na.png,1\n../secret.png,2\n", "outside the dataset folder"),
        ("path,score\na.png,1\n/etc/passwd,2\n", "outside the dataset folder"),
        (
            "path,score\na.png,1\na.png,3\n",
            r"labels.csv:3: 'a.png' is listed again \(first on line 2\)",
        ),
        ("path,score\na.png,nan\nb.png,2\n", r"labels.csv:2: score 'nan' is not a finite number"),
        ("path,score\na.png,1\nb.png,inf\n", r"labels.csv:3: score 'inf' is not a finite number"),
        ("path,score,content\na.png,1,x\nb.png\n", r"labels.csv:3: 1 fields, the header has 3"),
        ("path,score\ncafé.png,1\n", r"labels.csv: not utf-8-sig text"),
    ],
)
def test_csv_label_files_are_checked_by_file_and_line(tmp_path, text, message):
    from mpiqa.data.datasets.base import DatasetFormatError

    with pytest.raises(DatasetFormatError, match=message):
        load_dataset("csv", _csv(tmp_path, text))


def test_paths_outside_the_root_only_when_allowed(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "elsewhere.png").write_bytes(b"")
    (root / "a.png").write_bytes(b"")
    (root / "labels.csv").write_text("path,score\na.png,1\n../elsewhere.png,2\n")
    dataset = load_dataset("csv", root, allow_outside_root=True)
    assert len(dataset) == 2
