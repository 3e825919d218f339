"""KADID-10k-style synthetic distortions and the meta-learning tasks built from them."""

from mpiqa.data.distortions.kadid import DISTORTION_NAMES, DISTORTIONS, distort, get_distortion
from mpiqa.data.distortions.tasks import DistortedDataset, DistortionTask, level_quality, make_tasks

__all__ = [
    "DISTORTIONS",
    "DISTORTION_NAMES",
    "DistortedDataset",
    "DistortionTask",
    "distort",
    "get_distortion",
    "level_quality",
    "make_tasks",
]
