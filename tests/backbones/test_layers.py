"""Transformer blocks: the class-token readout of the last block (``keep``)."""

from __future__ import annotations

import pytest
import torch

from mpiqa.backbones.layers import Attention, Transformer, init_transformer_


@pytest.fixture
def stack() -> Transformer:
    torch.manual_seed(0)
    stack = Transformer(32, 3, 4, 4.0, "quick_gelu", causal=False).eval()
    init_transformer_(stack)
    return stack


def test_keep_equals_the_full_pass_for_the_kept_tokens(stack):
    x = torch.randn(2, 17, 32)
    full = stack(x)
    for keep in (1, 3):
        got = stack(x, keep=keep)
        assert got.shape == (2, keep, 32)
        assert torch.allclose(got, full[:, :keep], atol=1e-5)
    # a sub-range: the last block of the range is the one cut short
    assert torch.allclose(stack(x, stop=2, keep=1), stack(x, stop=2)[:, :1], atol=1e-5)
    assert torch.allclose(stack(x, start=3, keep=1), x[:, :1])  # no block runs


def test_keep_sees_hooks_and_gives_the_same_gradients(stack):
    x = torch.randn(2, 9, 32, requires_grad=True)
    prompt = torch.randn(1, 2, 32)

    def hook(i, tokens):  # VPT-deep style: replace two tokens before every block
        return torch.cat([tokens[:, :1], prompt.expand(len(tokens), -1, -1), tokens[:, 3:]], 1)

    stack.grad_checkpointing = True
    cut = stack(x, block_hook=hook, keep=1)
    cut.sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in stack.parameters()]
    x.grad = None
    stack.zero_grad()
    stack.grad_checkpointing = False
    full = stack(x, block_hook=hook)[:, :1]
    full.sum().backward()
    assert torch.allclose(cut, full, atol=1e-5)
    for got, want in zip(grads, [x.grad] + [p.grad for p in stack.parameters()], strict=True):
        assert torch.allclose(got, want, atol=1e-5)


def test_queries_refuse_a_causal_mask():
    with pytest.raises(ValueError, match="non-causal"):
        Attention(8, 2).requires_grad_(False)(torch.randn(1, 4, 8), causal=True, queries=1)
