"""The shipped mpiqa-small's data parts, rebuilt from the package and ../shared alone: its
BIQ2021 split with the MOS, and the synthetic rows as `pretrain-backbone
--val-clean-fraction 0.2 --seed 0` draws them. Shared by the scripts here."""

import csv
import json
import random
from pathlib import Path

from mpiqa.data.distortions.tasks import DistortedItem
from mpiqa.data.files import discover_images
from mpiqa.training.pretrain import synthetic_items

DATA = Path("/work/shared/data")
BIQ = DATA / "biq2021"


def split() -> dict:
    """The shipped split (`train` and `val`: paths relative to BIQ)."""
    return json.loads(Path("src/mpiqa/weights/mpiqa-small-split.json").read_text())


def mos_by_name() -> dict[str, float]:
    """BIQ2021's MOS by file name."""
    with open(BIQ / "Train (Images and MOS).csv") as f:
        return {r["Image Name"]: float(r["MOS"]) for r in csv.DictReader(f)}


def rated_rows() -> tuple[dict, dict]:
    """The shipped split as ``(path, MOS)`` rows and as each row's source (``ss01`` …),
    both keyed by part (``train``, ``val``), in the split's order."""
    parts, mos = split(), mos_by_name()
    names = {k: [n.split("/")[-1] for n in parts[k]] for k in ("train", "val")}
    rated = {k: [(str(BIQ / n), mos[n.split("/")[-1]]) for n in parts[k]] for k in names}
    return rated, {k: [m[:4] for m in v] for k, v in names.items()}


def synthetic(
    seed: int = 0, per_image: int = 30
) -> tuple[list[DistortedItem], list[DistortedItem]]:
    """Seed 0's synthetic training rows (or ``seed``'s draws from the same clean images,
    ``per_image`` distorted versions of each) and the held-apart ones (seed 0's
    validation rows, always 30 per image)."""
    clean = [str(f) for f in discover_images([str(DATA / "pristine")], recursive=True).files]
    shuffled = sorted(clean)
    random.Random(0).shuffle(shuffled)  # the split seed, as pretrain-backbone shuffles
    held = set(shuffled[: round(len(shuffled) * 0.2)])
    train = synthetic_items([c for c in clean if c not in held], per_image, seed)
    val = synthetic_items([c for c in clean if c in held], 30, 1)
    assert len(train) == 88 * (per_image + 1) and len(val) == 682
    return train, val
