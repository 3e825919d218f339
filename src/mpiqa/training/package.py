"""Turn a trained run into a model that ships inside the package (``mpiqa/weights/``).

``python -m mpiqa.training.package --name NAME --backbone B.safetensors [--checkpoint
best.safetensors]`` copies the backbone (and the prompt checkpoint, for a prompt model)
under the model's name, points the checkpoint at the registered backbone (no absolute
paths of the machine that trained it) and registers the backbone's SHA-256 in
``backbones/pretrained.json``. Without ``--checkpoint`` only the backbone ships (a
zero-shot model such as ``mpiqa-small``); ``--heads`` adds the towers of other seeds as
the zero-shot model's ensemble (``{name}-heads.safetensors``), ``--probe`` the linear
probe averaged in (``{name}-probe.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from importlib import resources
from pathlib import Path

from mpiqa.backbones.convert import embedded_config
from mpiqa.backbones.pretrained import sha256_of
from mpiqa.training.checkpoint import read_checkpoint_meta, write_json

logger = logging.getLogger(__name__)

TAG = "mpiqa"


def _locations(weights_dir: str | Path | None, registry: str | Path | None) -> tuple[Path, Path]:
    """The folder the weights ship in and the registry file (the package's by default)."""
    package = Path(str(resources.files("mpiqa")))
    return (
        Path(weights_dir) if weights_dir else package / "weights",
        Path(registry) if registry else package / "backbones" / "pretrained.json",
    )


def _register(registry: Path, key: str, file: str, digest: str) -> dict:
    """Record a packaged file under ``key`` in the registry; returns the entry."""
    entry = {"file": file, "sha256": digest, "packaged": True}
    table = json.loads(registry.read_text())
    table[key] = {TAG: entry}
    registry.write_text(json.dumps(table, indent=2) + "\n")
    return entry


def package_model(
    backbone: str | Path,
    checkpoint: str | Path | None,
    name: str = "mpiqa-small",
    weights_dir: str | Path | None = None,
    registry: str | Path | None = None,
) -> dict:
    """Copy a backbone and a prompt checkpoint (if any) into ``weights_dir`` as
    ``{name}-backbone`` and ``{name}``, and the run's ``split.json`` (beside the
    checkpoint, else beside the backbone) as ``{name}-split.json``; returns the registry
    entry written.

    Raises:
        ValueError: the backbone file has no embedded config (not from pretrain-backbone),
            or its architecture is not ``name``.
    """
    backbone = Path(backbone)
    config = embedded_config(backbone)
    if config is None or config.name != name:
        raise ValueError(
            f"{backbone}: not an mpiqa backbone of architecture {name} "
            f"(found {config.name if config else 'no embedded config'})"
        )
    weights_dir, registry = _locations(weights_dir, registry)
    weights_dir.mkdir(parents=True, exist_ok=True)
    backbone_file = f"{name}-backbone.safetensors"
    shutil.copyfile(backbone, weights_dir / backbone_file)
    digest = sha256_of(weights_dir / backbone_file)
    if checkpoint is None:
        split = backbone.parent / "split.json"
        if split.is_file():
            shutil.copyfile(split, weights_dir / f"{name}-split.json")
    else:
        checkpoint = Path(checkpoint)
        meta = read_checkpoint_meta(checkpoint)
        meta["backbone"] = {"arch": name, "weights": None, "seed": 0, "sha256": digest}
        # Paths of the training machine mean nothing elsewhere; the split ships beside the
        # weights, so users can tell which images the model has seen.
        config = meta.get("config", {})
        config.get("backbone", {})["weights"] = None
        split = checkpoint.parent / "split.json"
        if split.is_file():
            shutil.copyfile(split, weights_dir / f"{name}-split.json")
            config.get("data", {})["split_file"] = f"{name}-split.json"
        shutil.copyfile(checkpoint, weights_dir / f"{name}.safetensors")
        write_json(weights_dir / f"{name}.json", meta)
    entry = _register(registry, name, backbone_file, digest)
    logger.info("packaged %s into %s (backbone sha256 %s)", name, weights_dir, digest)
    return entry


def package_heads(
    members: list[str | Path],
    name: str = "mpiqa-small",
    weights_dir: str | Path | None = None,
    registry: str | Path | None = None,
) -> dict:
    """Write the extra members of ``name``'s ensemble (backbones of other seeds, each with
    the packaged backbone's stem) as ``{name}-heads.safetensors``: their towers without
    the stem (float16, as the backbone ships), the level texts of their text towers and
    their temperatures; registers it as ``{name}-heads``. Returns the registry entry.

    Raises:
        ValueError: a member is not of ``name``'s architecture or has another stem.
    """
    import torch
    from safetensors.torch import save_file

    from mpiqa.backbones.factory import load_clip
    from mpiqa.models.quality_levels import HEADS_FORMAT, LevelHead

    weights_dir, registry = _locations(weights_dir, registry)
    primary = load_clip(weights_dir / f"{name}-backbone.safetensors")
    stem = primary.visual.stem.state_dict()
    tensors = {}
    for index, member in enumerate(members, start=1):
        config = embedded_config(member)
        if config is None or config.name != name:
            raise ValueError(f"{member}: not an mpiqa backbone of architecture {name}")
        clip = load_clip(member)
        other = clip.visual.stem.state_dict()
        if other.keys() != stem.keys() or any(not torch.equal(other[k], stem[k]) for k in stem):
            raise ValueError(f"{member}: its stem differs from the packaged backbone's")
        head = LevelHead.from_backbone(clip)
        for key, value in head.visual.state_dict().items():
            if not key.startswith("stem."):
                tensors[f"{index}.visual.{key}"] = value.half().contiguous()
        tensors[f"{index}.level_text"] = head.level_text.float().contiguous()
        tensors[f"{index}.logit_scale"] = head.logit_scale.float().reshape(1).contiguous()
    file = f"{name}-heads.safetensors"
    save_file(tensors, str(weights_dir / file), metadata={"format": HEADS_FORMAT, "arch": name})
    entry = _register(registry, f"{name}-heads", file, sha256_of(weights_dir / file))
    logger.info("packaged %d extra head(s) of %s into %s", len(members), name, weights_dir / file)
    return entry


def package_probe(
    probe: str | Path,
    name: str = "mpiqa-small",
    weights_dir: str | Path | None = None,
    registry: str | Path | None = None,
) -> dict:
    """Copy a linear probe (``probe.safetensors`` of pretrain-backbone) as
    ``{name}-probe.safetensors`` and register it as ``{name}-probe``. Returns the entry.

    Raises:
        CheckpointError: not a probe file, or not as wide as the packaged backbone's stem.
    """
    from mpiqa.models.quality_levels import load_linear_probe

    weights_dir, registry = _locations(weights_dir, registry)
    config = embedded_config(weights_dir / f"{name}-backbone.safetensors")
    load_linear_probe(probe, config.vision.token_channels)  # refuses what does not fit
    file = f"{name}-probe.safetensors"
    shutil.copyfile(probe, weights_dir / file)
    entry = _register(registry, f"{name}-probe", file, sha256_of(weights_dir / file))
    logger.info("packaged the linear probe of %s into %s", name, weights_dir / file)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpiqa.training.package", description=__doc__)
    parser.add_argument(
        "--backbone", required=True, help="backbone.safetensors of pretrain-backbone"
    )
    parser.add_argument(
        "--checkpoint", help="best.safetensors of mpiqa train (a prompt model; omit for zero-shot)"
    )
    parser.add_argument("--name", default="mpiqa-small")
    parser.add_argument(
        "--heads", nargs="+", default=(), metavar="B.safetensors",
        help="backbones of other seeds (same stem): shipped as the ensemble's extra heads",
    )  # fmt: skip
    parser.add_argument(
        "--probe", metavar="P.safetensors",
        help="probe.safetensors of the backbone's run: shipped as the linear probe averaged in",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    package_model(args.backbone, args.checkpoint, args.name)
    if args.heads:
        package_heads(list(args.heads), args.name)
    if args.probe:
        package_probe(args.probe, args.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
