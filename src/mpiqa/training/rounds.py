"""The n-round protocol: n seeded splits, train on each, score each test part once after
model selection on its validation part, and summarise (median, mean +- std)."""

from __future__ import annotations

import copy
from pathlib import Path

from mpiqa import distributed, jsonfile
from mpiqa.evaluation.evaluate import evaluate_checkpoint
from mpiqa.evaluation.metrics import summarise_rounds
from mpiqa.evaluation.plots import plot_if_available, rounds_plot
from mpiqa.evaluation.report import rounds_table
from mpiqa.training.config import TrainConfig
from mpiqa.training.run import train_run


def run_rounds(
    config: TrainConfig, out: str | Path, rounds: int, init_prompts=None, resume: bool = False
) -> dict:
    """Writes ``round_<r>/`` per round, ``summary.json`` / ``summary.md`` and ``rounds.png``
    (with the ``plot`` extra); returns the summary. Split seeds are data.split_seed + r;
    the training seed stays fixed.

    Under torchrun the processes train each round together; the first one alone scores
    the test parts, writes the summary and returns it (the others return ``summary``
    None, after the last round's training)."""
    out = Path(out)
    main = distributed.env_rank() == 0
    per_round, seeds, labels = [], [], []
    for r in range(rounds):
        round_config = copy.deepcopy(config)
        round_config.data.split_seed = config.data.split_seed + r
        seeds.append(round_config.data.split_seed)
        round_dir = out / f"round_{r}"
        result = train_run(round_config, round_dir, resume=resume, init_prompts=init_prompts)
        labels.append(result["labelled_images"])
        if not main:  # it waits in the next round's first collective meanwhile
            continue
        per_round.append(
            evaluate_checkpoint(
                round_dir / "best.safetensors",
                config.data.dataset,
                config.data.root,
                "test",
                round_dir / "test",
                check_images=config.data.check_images,
                dataset_options=config.data.options,
            )
        )
    if not main:
        return {"rounds": [], "split_seeds": seeds, "train_seed": config.train.seed,
                "summary": None, "config": config.to_dict()}  # fmt: skip
    summary = summarise_rounds(per_round)
    for row, n in zip(per_round, labels, strict=True):
        row["labelled_images"] = n
    record = {
        "rounds": per_round,
        "split_seeds": seeds,
        "train_seed": config.train.seed,
        "summary": summary,
        "config": config.to_dict(),
    }
    (out / "summary.json").write_text(jsonfile.dumps(record, indent=1))
    (out / "summary.md").write_text(
        f"{config.data.dataset}, {rounds} rounds, split seeds {seeds} (test parts)\n\n"
        + rounds_table(summary)
    )
    plot_if_available(
        rounds_plot,
        {"SRCC": [r["srcc"] for r in per_round], "PLCC": [r["plcc"] for r in per_round]},
        out / "rounds.png",
        f"{config.data.dataset}: {rounds} rounds",
        ylabel="on the test part",
    )
    return record
