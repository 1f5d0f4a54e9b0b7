"""LoRA plasticity diagnostics on hand-built factors."""

import math

import torch

from rlreason.learner import plasticity


def _factors(singular_values, out=6, inp=5):
    """B [out, r], A [r, in] whose product has exactly these singular values."""
    r = len(singular_values)
    u, _ = torch.linalg.qr(torch.randn(out, r, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(inp, r, dtype=torch.float64))
    return v.T.contiguous(), u * torch.tensor(singular_values, dtype=torch.float64)


def test_effective_rank_counts_the_directions_used():
    torch.manual_seed(0)
    a, b = _factors([1.0, 1.0, 0.0, 0.0])
    assert math.isclose(plasticity.effective_rank(a, b), 2.0, rel_tol=1e-6)
    a, b = _factors([3.0, 3.0, 3.0, 3.0])
    assert math.isclose(plasticity.effective_rank(a, b), 4.0, rel_tol=1e-6)
    assert plasticity.effective_rank(a, torch.zeros_like(b)) == 0.0  # B = 0: the update is empty
    a, b = _factors([1.0, 0.1])
    assert 1.0 < plasticity.effective_rank(a, b) < 1.5


def test_dormant_components_and_component_gradients():
    a = torch.ones(4, 3)
    b = torch.ones(5, 4)
    b[:, 1] = 0.0  # component 1 contributes nothing
    b[:, 2] = 0.001  # component 2 contributes 0.1% of the largest
    assert plasticity.dormant_fraction(a, b) == 0.5
    assert plasticity.dormant_fraction(a, torch.zeros(5, 4)) == 1.0  # at init every component is dormant
    a.requires_grad_(), b.requires_grad_()
    assert plasticity.component_grad_norms(a, b) is None
    (b @ a).sum().backward()
    norms = plasticity.component_grad_norms(a, b)
    assert norms.shape == (4,) and torch.allclose(norms[0], torch.sqrt(a.grad[0].square().sum() + b.grad[:, 0]
                                                                      .square().sum()))
    metrics = plasticity.gradient_metrics([(a, b)])
    assert metrics["lora/component_grad_norm_min"] <= metrics["lora/component_grad_norm_mean"]
