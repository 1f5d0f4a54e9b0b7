"""Plasticity diagnostics of a LoRA adapter: is the adapter still able to learn, and how much has it changed?

Every adapted layer holds factors A [r, in] and B [out, r]; its update is dW = s * B A (s = alpha / r). Rank
component k is the pair (B[:, k], A[k, :]). Reported every step (averaged over layers):
- ``lora/effective_rank``: exp of the entropy of dW's normalised singular values (Roy & Vetterli, 2007): how many
  directions the update really uses (0 before the first step, when B = 0);
- ``lora/dormant_frac``: fraction of components whose contribution ||B[:, k]|| * ||A[k, :]|| is below 1% of the
  layer's largest (at B = 0 every component is dormant);
- ``lora/component_grad_norm_mean`` / ``_min``: the gradient norm of each component (its A row and B column):
  components that stop receiving gradient have lost plasticity (Dohare et al., Nature 2024).
The learner also logs ``kl_to_ref``, the KL to the reference on the current batch: for a LoRA policy the base
model (forgetting is predicted by it, "RL's Razor", arXiv 2509.04259; every ``train.kl_to_ref_every`` steps when
no KL term needs the reference anyway), or the previous phase's adapter once a continual run sets an anchor.
"""

from __future__ import annotations

import math
import statistics

import torch

DORMANT_BELOW = 0.01


def lora_factors(peft_model, adapter: str = "default") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(A [r, in], B [out, r]) of ``adapter`` in every adapted layer (the parameters, with their grads)."""
    out = []
    for module in peft_model.modules():
        if hasattr(module, "lora_A") and hasattr(module, "lora_B") and adapter in getattr(module, "lora_A", {}):
            out.append((module.lora_A[adapter].weight, module.lora_B[adapter].weight))
    return out


def effective_rank(a: torch.Tensor, b: torch.Tensor) -> float:
    """Effective rank of B A, from the r x r core of its QR factors (never the out x in product)."""
    a, b = a.detach().double(), b.detach().double()
    _, rb = torch.linalg.qr(b)
    _, ra = torch.linalg.qr(a.T)
    s = torch.linalg.svdvals(rb @ ra.T)
    total = float(s.sum())
    if total <= 0.0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return math.exp(float(-(p * p.log()).sum()))


def component_contributions(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[r]: ||B[:, k]|| * ||A[k, :]|| for each rank component k."""
    return b.detach().norm(dim=0) * a.detach().norm(dim=1)


def dormant_fraction(a: torch.Tensor, b: torch.Tensor, below: float = DORMANT_BELOW) -> float:
    c = component_contributions(a, b)
    return float((c <= below * c.max()).float().mean()) if c.numel() else 0.0


def component_grad_norms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """[r]: the norm of each component's gradient (A's row and B's column together), None before a backward."""
    if a.grad is None or b.grad is None:
        return None
    return (a.grad.detach().square().sum(dim=1) + b.grad.detach().square().sum(dim=0)).sqrt()


def weight_metrics(factors: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    if not factors:
        return {}
    return {"lora/effective_rank": statistics.fmean(effective_rank(a, b) for a, b in factors),
            "lora/dormant_frac": statistics.fmean(dormant_fraction(a, b) for a, b in factors)}


def gradient_metrics(factors: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    norms = [n for n in (component_grad_norms(a, b) for a, b in factors) if n is not None]
    if not norms:
        return {}
    every = torch.cat(norms)
    return {"lora/component_grad_norm_mean": float(every.mean()),
            "lora/component_grad_norm_min": float(every.min())}
