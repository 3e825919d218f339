"""The few-shot testbed: does each part of few-shot fine-tuning help, on a target whose
labels the model never saw? (Run by recipes/few-shot-testbed.sh, which first builds the
backbone and meta-prompts from synthetic distortions only.)

Target: a seeded sample of BIQ2021 images (the size of LIVE Challenge by default). Every
variant runs the same rounds (same split seeds, so the same 50 shots and test parts) and
is compared by paired Wilcoxon signed-rank tests on the per-round test SRCC: against the
meta-prompt model without fine-tuning (zero-shot), and against the variant without the
component.

    python recipes/few_shot_testbed.py --backbone B --meta M --root BIQ2021 --out OUT
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import wilcoxon

from mpiqa.backbones.factory import load_clip
from mpiqa.data.datasets import load_dataset
from mpiqa.data.records import IQADataset
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA
from mpiqa.training.checkpoint import backbone_record
from mpiqa.training.config import TrainConfig
from mpiqa.training.few_shot import run_rounds
from mpiqa.training.finetune import FinetuneConfig, TokenCache, frozen_blocks
from mpiqa.training.run import load_prompt_init

logger = logging.getLogger("testbed")

# name -> (start, finetune options). Starts: "meta", the meta-prompt model; "random", the
# same prompt model with random prompts; "coop", random text context and no visual prompts
# (CoOp), trained alone. Options add to mpiqa finetune's defaults (the visual prompts of
# the last block, lr 1e-3, 10 full-batch steps: chosen by recipes/few_shot_schedule.py on
# split seeds 100-104, which this table does not use; gradient regularisation is set per
# variant).
OFF = {"grad_reg": None}
VARIANTS = {
    "coop-random-context": ("coop", {**OFF, "train_text_context": True, "visual_prompt_blocks": 0}),
    "random-prompts": ("random", OFF),
    "meta-prompts": ("meta", OFF),
    "meta-prompts+grad-reg (the default)": ("meta", {"grad_reg": 5.0}),
    "meta-prompts+last-block": ("meta", {**OFF, "train_visual_blocks": 1}),
    "meta-prompts+text-context": ("meta", {**OFF, "train_text_context": True}),
    "meta-prompts+cv-selected-steps": ("meta", {**OFF, "select": "cv"}),
}
# variant -> the variant without the component it adds
ABLATES = {
    "meta-prompts": "random-prompts",
    "meta-prompts+grad-reg (the default)": "meta-prompts",
    "meta-prompts+last-block": "meta-prompts",
    "meta-prompts+text-context": "meta-prompts",
    "meta-prompts+cv-selected-steps": "meta-prompts",
}


def target_dataset(root: str, n: int, seed: int) -> IQADataset:
    data = load_dataset("biq2021", root)
    records = [r for r in data if r.score is not None]
    chosen = random.Random(seed).sample(records, min(n, len(records)))
    return IQADataset(data.name, data.root, chosen, data.scale, data.higher_better)


def p_value(a: list[float], b: list[float]) -> float | None:
    diffs = [x - y for x, y in zip(a, b, strict=True) if x != y]
    return float(wilcoxon(diffs).pvalue) if len(diffs) >= 2 else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", required=True, help="backbone.safetensors (synthetic-only)")
    p.add_argument("--meta", required=True, help="meta_prompts.safetensors")
    p.add_argument("--config", default="configs/mpiqa-tiny.toml", help="the prompt model")
    p.add_argument("--root", required=True, help="BIQ2021 folder")
    p.add_argument("--images", type=int, default=1162)
    p.add_argument("--shots", type=int, default=50)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--split-seed", type=int, default=0, help="seed of the first round")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="finetune options for every variant, e.g. lr=3e-4")  # fmt: skip
    p.add_argument("--out", required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    dataset = target_dataset(args.root, args.images, seed=0)
    mmp = TrainConfig.load(args.config).model
    backbone = load_clip(args.backbone, arch="mpiqa-tiny")
    info = backbone_record("mpiqa-tiny", args.backbone, 0)

    def factory(start: str):
        def make() -> MultiModalPromptIQA:
            import copy

            torch.manual_seed(0)  # the random prompts of "coop" and "random"
            if start == "coop":
                config = MMPConfig.from_dict({**mmp.to_dict(), "visual_depth": 0})
                return MultiModalPromptIQA(copy.deepcopy(backbone), config).eval()
            model = MultiModalPromptIQA(copy.deepcopy(backbone), MMPConfig.from_dict(mmp.to_dict()))
            if start == "meta":
                load_prompt_init(model, args.meta)
            return model.eval()

        return make

    caches: dict = {}
    results = {}
    for name in args.variants:
        start, options = VARIANTS[name]
        config = FinetuneConfig.from_dict({**common, **options})
        make = factory(start)
        model = make()
        key = (start, frozen_blocks(model, config))
        if key not in caches:
            caches[key] = TokenCache(model, key[1], teacher=True)
        t0 = time.perf_counter()
        record = run_rounds(
            make, info, dataset, config, args.shots, args.rounds, out / name.replace(" ", "_"),
            split_seed=args.split_seed, save_checkpoints=False,
            cross_validated=config.select == "cv", cache=caches[key],
        )  # fmt: skip
        results[name] = record
        logger.info("%s: %.0f s", name, time.perf_counter() - t0)
    write_table(results, out, args)


def write_table(results: dict, out: Path, args) -> None:
    meta = results.get("meta-prompts")
    zero = [r["zero_shot_srcc"] for r in meta["rounds"]] if meta else None
    lines = [
        f"BIQ2021 sample of {args.images} images, {args.shots} shots, {args.rounds} rounds "
        f"(split seeds {args.split_seed}-{args.split_seed + args.rounds - 1}) "
        "(test SRCC; p: two-sided paired Wilcoxon over rounds)",
        "",
        "| variant | median | mean ± std | vs zero-shot: median gain, rounds below, p "
        "| vs without the component: median gain, p |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    if zero:
        lines.append(
            f"| zero-shot (meta-prompt model, no fine-tuning) | {np.median(zero):.4f} | "
            f"{np.mean(zero):.4f} ± {np.std(zero):.4f} | | |"
        )
    for name, record in results.items():
        srcc = [r["srcc"] for r in record["rounds"]]
        cells = [f"{np.median(srcc):.4f}", f"{np.mean(srcc):.4f} ± {np.std(srcc):.4f}"]
        if zero:
            gains = np.array(srcc) - np.array(zero)
            cells.append(
                f"{np.median(gains):+.4f}, {int((gains < 0).sum())}/{len(gains)}, "
                f"p={_fmt(p_value(srcc, zero))}"
            )
        else:
            cells.append("")
        base = ABLATES.get(name)
        if base in results:
            other = [r["srcc"] for r in results[base]["rounds"]]
            gains = np.array(srcc) - np.array(other)
            cells.append(f"{np.median(gains):+.4f} vs {base}, p={_fmt(p_value(srcc, other))}")
        else:
            cells.append("")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(text)


def _fmt(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3f}"


if __name__ == "__main__":
    main()
