"""Evaluation reports: metrics JSON, a Markdown table, a scatter plot PNG, predictions CSV.

The plot is drawn with Pillow: a scatter of predicted score against MOS does not justify
a dependency on matplotlib."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

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


def scatter_png(
    pred: np.ndarray, mos: np.ndarray, path: Path, title: str = "", size: int = 480
) -> None:
    margin = 56
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    inner = size - 2 * margin

    def scale(values: np.ndarray) -> tuple[np.ndarray, float, float]:
        low, high = float(np.min(values)), float(np.max(values))
        span = high - low or 1.0
        return (values - low) / span, low, high

    xs, x_low, x_high = scale(np.asarray(pred, dtype=float))
    ys, y_low, y_high = scale(np.asarray(mos, dtype=float))
    draw.rectangle([margin, margin, size - margin, size - margin], outline="black")
    for x, y in zip(xs, ys, strict=True):
        cx, cy = margin + x * inner, size - margin - y * inner
        draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=(31, 119, 180))
    draw.text((margin, size - margin + 8), f"{x_low:.3g}", fill="black")
    draw.text((size - margin - 30, size - margin + 8), f"{x_high:.3g}", fill="black")
    draw.text((size // 2 - 40, size - margin + 24), "predicted score", fill="black")
    draw.text((4, size - margin - 10), f"{y_low:.3g}", fill="black")
    draw.text((4, margin), f"{y_high:.3g}", fill="black")
    draw.text((4, size // 2), "MOS", fill="black")
    draw.text((margin, 16), title, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_report(
    out_dir: str | Path,
    name: str,
    metrics: dict,
    pred,
    mos,
    keys: Sequence[str],
    extra: dict | None = None,
) -> None:
    """metrics.json, table.md, scatter.png and predictions.csv in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({**metrics, **(extra or {})}, indent=1))
    (out / "table.md").write_text(markdown_table({name: metrics}))
    title = f"{name}: SRCC {metrics['srcc']:.3f}  PLCC {metrics['plcc']:.3f}  n={metrics['n']}"
    scatter_png(np.asarray(pred), np.asarray(mos), out / "scatter.png", title)
    with open(out / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "score", "mos_normalised"])
        for key, p, m in zip(keys, pred, mos, strict=True):
            writer.writerow([key, f"{p:.6f}", f"{m:.6f}"])
