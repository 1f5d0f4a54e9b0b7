"""What the learner computes once per batch, before its optimizer steps (``Learner.prepare``), or what a
primitive call brings (``Learner.forward_backward``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Prepared:
    """What the learner computes once per batch, before its optimizer steps."""

    advantages: torch.Tensor  # [B, T]
    old: torch.Tensor | None = None  # [B, T] logprobs before the step (None: the current ones, detached)
    ref: torch.Tensor | None = None  # [B, T] reference logprobs
    old_values: torch.Tensor | None = None  # [B, T] critic values before the step
    returns: torch.Tensor | None = None  # [B, T] critic targets
    metrics: dict | None = None
    weights: torch.Tensor | None = None  # [B, T] per-token weights (the primitive API's cross_entropy)
