"""Data: image decoding, preprocessing, file discovery and dataset adapters."""

from mpiqa.data.datasets import list_datasets, load_dataset
from mpiqa.data.files import discover_images, natural_key
from mpiqa.data.images import ImageDecodeError, load_image
from mpiqa.data.transforms import CLIP_MEAN, CLIP_STD, preprocess_pil, preprocess_tensor

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "ImageDecodeError",
    "discover_images",
    "list_datasets",
    "load_dataset",
    "load_image",
    "natural_key",
    "preprocess_pil",
    "preprocess_tensor",
]
