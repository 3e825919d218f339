"""Dataset adapters: each reads a standard IQA dataset as its download ships it."""

from mpiqa.data.datasets import authentic, generic, pipal, synthetic  # noqa: F401  (registration)
from mpiqa.data.datasets.base import (
    DatasetFormatError,
    MissingImagesError,
    dataset_descriptions,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "DatasetFormatError",
    "MissingImagesError",
    "dataset_descriptions",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
