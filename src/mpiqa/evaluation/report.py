"""Evaluation reports: metrics JSON, a Markdown table, predictions CSV and (with the
``plot`` extra) a scatter plot with the fitted logistic (:mod:`mpiqa.evaluation.plots`)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from mpiqa import jsonfile
from mpiqa.evaluation.plots import plot_if_available, scatter_plot

_KEYS = ("srcc", "krcc", "plcc", "plcc_raw", "rmse", "rmse_raw", "n")


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    """One row per name, one column per metric."""
    lines = ["| | " + " | ".join(_KEYS) + " |", "|---|" + "---:|" * len(_KEYS)]
    for name, metrics in rows.items():
        cells = [
            f"{metrics[k]:.4f}" if k != "n" else str(metrics[k]) for k in _KEYS if k in metrics
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rounds_table(summary: dict[str, dict[str, float]]) -> str:
    lines = ["| metric | median | mean ± std |", "|---|---:|---:|"]
    for key, stats in summary.items():
        lines.append(
            f"| {key} | {stats['median']:.4f} | {stats['mean']:.4f} ± {stats['std']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: str | Path,
    name: str,
    metrics: dict,
    pred,
    mos,
    keys: Sequence[str],
    extra: dict | None = None,
) -> None:
    """metrics.json, table.md, predictions.csv and scatter.png (when matplotlib is
    installed) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(jsonfile.dumps({**metrics, **(extra or {})}, indent=1))
    (out / "table.md").write_text(markdown_table({name: metrics}))
    plot_if_available(scatter_plot, pred, mos, out / "scatter.png", metrics, name)
    with open(out / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "score", "mos_normalised"])
        for key, p, m in zip(keys, pred, mos, strict=True):
            writer.writerow([key, f"{p:.6f}", f"{m:.6f}"])
