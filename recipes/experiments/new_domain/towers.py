"""Few-shot adaptation of mpiqa-small's *towers* to a domain unlike BIQ2021 (see
prepare.py and rounds.py, whose rounds and labels this reuses): N labels train a part of
each of the five towers by gradient steps on a pairwise ranking loss of the shipped mix
(the probe's half fixed), and the adapted mix is scored on the round's test images.

Parts that train (each tower's own copy):
    text:  an offset to the five quality words' text features (5 x 128 numbers);
    head:  the final LayerNorm and the projection (ln_post, proj: 25k numbers);
    block: the last transformer block (445k numbers).

    python recipes/experiments/new_domain/towers.py prepare runs/nd/pretrain.json  # 2 min
    python recipes/experiments/new_domain/towers.py choose 50 10   # the schedule, on other rounds
    python recipes/experiments/new_domain/towers.py run 50 20 PART LR STEPS

``choose`` draws its rounds from seeds 5000+ (other test contents and labels than
``run``'s seeds 1000+, which are rounds.py's) and prints every part x lr x steps.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr, wilcoxon

import mpiqa
from mpiqa.models.quality_levels import expected_level
from mpiqa.training.losses import rank_fidelity_loss

CACHE = Path("runs/new_domain/towers.pt")


def towers(model):
    """(visual, level_text, logit_scale) of each of the five towers."""
    out = [(model.backbone.visual, model.level_text, model.backbone.logit_scale)]
    out += [(h.visual, h.level_text, h.logit_scale) for h in model.extra_heads]
    return out


def prepare(pretrain_json: str) -> None:
    """Each tower's tokens before its last block, for the 682 images of prepare.py."""
    from mpiqa.data.distortions.tasks import render
    from mpiqa.training.pretrain import synthetic_items

    mpiqa.tune_malloc()
    summary = json.loads(Path(pretrain_json).read_text())
    items = synthetic_items(
        summary["config"]["notes"]["val_clean"], 30, summary["config"]["seed"] + 1
    )
    feats = torch.load("runs/new_domain/feats.pt", weights_only=True)
    assert [i.source for i in items] == feats["content"], "prepare.py's images, in its order"
    model = mpiqa.create_model("mpiqa-small").for_inference()
    parts = towers(model)
    rows: list[list[torch.Tensor]] = [[] for _ in parts]
    cache: dict = {}
    with torch.no_grad():
        for begin in range(0, len(items), 16):
            images = [render(item, 512, cache) for item in items[begin : begin + 16]]
            pixels = torch.cat([model.preprocess(im) for im in images])
            features = model.backbone.visual.stem_features(model._tower_view(pixels))
            for k, (visual, _, _) in enumerate(parts):
                depth = len(visual.transformer.resblocks)
                rows[k].append(visual.transformer(visual.embed_features(features), stop=depth - 1))
            print(begin, end="\r", flush=True)
    torch.save({"tokens": [torch.cat(r) for r in rows]}, CACHE)


class Adapted(torch.nn.Module):
    """One tower's last block and readout, with the chosen part trainable."""

    def __init__(self, visual, level_text, logit_scale, part: str) -> None:
        super().__init__()
        self.block = copy.deepcopy(visual.transformer.resblocks[-1]).requires_grad_(part == "block")
        self.ln = copy.deepcopy(visual.ln_post).requires_grad_(part == "head")
        self.proj = torch.nn.Parameter(visual.proj.detach().clone(), requires_grad=part == "head")
        self.text = level_text.detach().clone()
        self.offset = torch.nn.Parameter(torch.zeros_like(self.text), requires_grad=part == "text")
        self.scale = logit_scale.exp().detach()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.block(tokens, causal=False, queries=1)[:, 0]
        text = torch.nn.functional.normalize(self.text + self.offset, dim=-1)
        return expected_level(self.ln(x) @ self.proj, text, self.scale)


def adapted_scores(model, tokens, probe, idx, test, labels, part, lr, steps, seed=0):
    """The mix on ``test`` after ``steps`` of Adam on the labels ``idx``."""
    torch.manual_seed(seed)
    heads = [Adapted(*t, part) for t in towers(model)]
    params = [p for h in heads for p in h.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=lr)
    share = model.probe_share
    target = torch.as_tensor(labels[idx], dtype=torch.float32)
    p_idx = torch.as_tensor(probe[idx], dtype=torch.float32)
    for _ in range(steps):
        mix = (1 - share) * torch.stack(
            [h(t[idx]) for h, t in zip(heads, tokens, strict=True)]
        ).mean(0)
        loss = rank_fidelity_loss(mix + share * p_idx, target)
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        mix = torch.stack([h(t[test]) for h, t in zip(heads, tokens, strict=True)]).mean(0)
        return ((1 - share) * mix + share * torch.as_tensor(probe[test])).numpy()


def rounds(n: int, count: int, first_seed: int):
    d = torch.load("runs/new_domain/feats.pt", weights_only=True)
    contents = np.array(sorted(set(d["content"])))
    for r in range(count):
        rng = np.random.default_rng(first_seed + r)  # rounds.py's draws, in its order
        test_c = set(rng.choice(contents, 5, replace=False))
        test = np.flatnonzero([c in test_c for c in d["content"]])
        pool = np.flatnonzero([c not in test_c for c in d["content"]])
        yield rng.choice(pool, n, replace=False), test


def main() -> None:
    command = sys.argv[1]
    if command == "prepare":
        prepare(sys.argv[2])
        return
    torch.set_num_threads(2)
    d = torch.load("runs/new_domain/feats.pt", weights_only=True)
    s0, probe, y = (d[k].numpy() for k in ("score", "probe", "y"))
    tokens = torch.load(CACHE, weights_only=True)["tokens"]
    model = mpiqa.create_model("mpiqa-small").for_inference()
    n, count = int(sys.argv[2]), int(sys.argv[3])
    if command == "choose":
        grid = [(p, lr, s) for p in ("text", "head", "block") for lr in (1e-5, 1e-4, 1e-3, 1e-2)
                for s in (10, 30, 100)]  # fmt: skip
        first = 5000
    else:
        grid = [(sys.argv[4], float(sys.argv[5]), int(sys.argv[6]))]
        first = 1000
    gains: dict = {g: [] for g in grid}
    shipped = []
    for idx, test in rounds(n, count, first):
        base = spearmanr(s0[test], y[test]).statistic
        unchanged = adapted_scores(model, tokens, probe, idx, test, y, "text", 0.0, 0)
        assert np.abs(unchanged.clip(0, 1) - s0[test]).max() < 1e-4  # the parts add up
        shipped.append(base)
        for g in grid:
            scores = adapted_scores(model, tokens, probe, idx, test, y, *g)
            gains[g].append(spearmanr(scores, y[test]).statistic - base)
    print(f"N = {n}, {count} rounds from seed {first}; shipped median {np.median(shipped):.4f}")
    print("| part | lr | steps | median gain | mean gain | rounds below | Wilcoxon p |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (part, lr, steps), values in gains.items():
        v = np.array(values)
        p = wilcoxon(v).pvalue if np.any(v != 0) else float("nan")
        print(
            f"| {part} | {lr:g} | {steps} | {np.median(v):+.4f} | {v.mean():+.4f} | "
            f"{int((v < 0).sum())}/{count} | {p:.2g} |"
        )


if __name__ == "__main__":
    main()
