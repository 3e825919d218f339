"""Result files are standard JSON: a figure that is not a finite number is null."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mpiqa import jsonfile


def strict(text: str):
    return json.loads(text, parse_constant=pytest.fail)


def test_non_finite_figures_are_null_at_any_depth():
    value = {"srcc": math.nan, "rounds": [{"p": float("inf")}, (np.float32(0.5), -math.inf)],
             "n": np.int64(3), "ok": 0.25, "name": "x"}  # fmt: skip
    assert strict(jsonfile.dumps(value, indent=1)) == {
        "srcc": None, "rounds": [{"p": None}, [0.5, None]], "n": 3, "ok": 0.25, "name": "x",
    }  # fmt: skip
    assert strict(jsonfile.dumps(np.float64("nan"))) is None


def test_objects_without_a_json_type_are_written_as_text(tmp_path):
    assert strict(jsonfile.dumps({"out": tmp_path})) == {"out": str(tmp_path)}
