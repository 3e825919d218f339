"""The prompt model's two readouts: per-family softmaxes averaged, or LIQE's joint one."""

from __future__ import annotations

import pytest
import torch

from mpiqa.backbones.factory import build_random_clip
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA


def _predict(families, readout):
    torch.manual_seed(0)
    config = MMPConfig(families=families, visual_depth=1, visual_tokens=2, readout=readout)
    model = MultiModalPromptIQA(build_random_clip("test-tiny", seed=0), config).eval()
    with torch.no_grad():
        return model.predict(torch.randn(4, 3, 32, 32))


def test_one_family_reads_the_same_either_way():
    a, b = _predict(("distortion",), "family-mean"), _predict(("distortion",), "joint")
    torch.testing.assert_close(a.score, b.score)
    torch.testing.assert_close(a.distortion, b.distortion)


def test_joint_readout_is_one_softmax_over_all_families():
    joint = _predict(("scene", "distortion"), "joint")
    mean = _predict(("scene", "distortion"), "family-mean")
    torch.testing.assert_close(joint.quality.sum(-1), torch.ones(4))
    torch.testing.assert_close(joint.scene.sum(-1), torch.ones(4))
    assert not torch.allclose(joint.score, mean.score)


def test_unknown_readout_is_refused():
    with pytest.raises(ValueError, match="readout"):
        MMPConfig(readout="sum")
