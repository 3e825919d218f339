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
