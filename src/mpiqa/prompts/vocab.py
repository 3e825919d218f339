"""Class vocabularies of the text prompts, and how dataset labels map onto them.

Quality levels, scene categories (SPAQ's nine) and distortion classes are those of the
multi-modal prompt paper (Pan et al. 2024). The map from each dataset's own distortion
names to the eleven classes is ours.
"""

from __future__ import annotations

QUALITY_2 = ("low", "high")
QUALITY_5 = ("bad", "poor", "fair", "good", "perfect")
# The captions mpiqa's backbones are pre-trained with, per level word (their mean
# embedding is the level's text; models.quality_levels reads quality out with them).
QUALITY_TEMPLATES = ("a {} photo.", "{} photo.", "{} quality.")

SCENES = (
    "animal",
    "cityscape",
    "human",
    "indoor",
    "landscape",
    "night",
    "plant",
    "still_life",
    "others",
)
SCENE_PHRASES = {
    "animal": "an animal",
    "cityscape": "a cityscape",
    "human": "a human",
    "indoor": "an indoor scene",
    "landscape": "a landscape",
    "night": "a night scene",
    "plant": "a plant",
    "still_life": "a still life",
    "others": "an object",
}

DISTORTIONS = (
    "jpeg2000 compression", "jpeg compression", "noise", "blur", "color", "contrast",
    "overexposure", "underexposure", "spatial", "quantization", "other",
)  # fmt: skip

# Dataset distortion names (KADID-10k, TID2013, CSIQ, LIVE, and our generator) -> class.
DISTORTION_CLASS = {
    # blur
    "gaussian blur": "blur", "lens blur": "blur", "motion blur": "blur", "gaussian_blur": "blur",
    "lens_blur": "blur", "motion_blur": "blur", "image denoising": "blur", "denoise": "blur",
    # compression
    "jpeg": "jpeg compression", "jpeg compression": "jpeg compression",
    "jpeg transmission errors": "jpeg compression",
    "jpeg2000": "jpeg2000 compression", "jpeg2000 compression": "jpeg2000 compression",
    "jpeg2000 transmission errors": "jpeg2000 compression", "fast fading rayleigh channel": "jpeg2000 compression",
    # noise
    "white noise": "noise", "white_noise": "noise", "white noise in color component": "noise",
    "white_noise_color": "noise", "impulse noise": "noise", "impulse_noise": "noise",
    "multiplicative noise": "noise", "multiplicative_noise": "noise", "additive gaussian noise": "noise",
    "additive noise in color components": "noise", "spatially correlated noise": "noise",
    "masked noise": "noise", "high frequency noise": "noise", "multiplicative gaussian noise": "noise",
    "comfort noise": "noise", "lossy compression of noisy images": "noise",
    "additive white gaussian noise": "noise", "additive pink gaussian noise": "noise",
    # colour
    "color diffusion": "color", "color_diffusion": "color", "color shift": "color", "color_shift": "color",
    "color saturation 1": "color", "color_saturation_1": "color", "color saturation 2": "color",
    "color_saturation_2": "color", "change of color saturation": "color", "chromatic aberrations": "color",
    # quantization
    "color quantization": "quantization", "color_quantization": "quantization",
    "quantization": "quantization", "quantization noise": "quantization",
    "color quantization with dither": "quantization",
    # exposure and contrast
    "brighten": "overexposure", "darken": "underexposure", "mean shift": "other", "mean_shift": "other",
    "contrast change": "contrast", "contrast_change": "contrast",
    # spatial
    "jitter": "spatial", "non-eccentricity patch": "spatial", "non_eccentricity_patch": "spatial",
    "pixelate": "spatial", "color block": "spatial", "color_block": "spatial",
    "non eccentricity pattern noise": "spatial", "local block-wise distortions": "spatial",
    "sparse sampling and reconstruction": "spatial",
    # other
    "high sharpen": "other", "high_sharpen": "other",
}  # fmt: skip


def distortion_class(name: str | None) -> str | None:
    """The prompt class of a dataset distortion name, or None when unknown / unlabelled."""
    return DISTORTION_CLASS.get(name.lower()) if name else None
