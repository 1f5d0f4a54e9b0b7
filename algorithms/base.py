"""The algorithm interface: one input record per function kind, a spec per algorithm, a registry of specs.

The learner never asks which algorithm runs: it calls ``spec.loss(LossInputs, cfg)``. The controller calls
``spec.advantage(AdvantageInputs, cfg)`` and reads capability flags from the config (``needs_reference``).
Variants that differ by a switch are config fields of shared functions in :mod:`rlreason.algorithms.common`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from rlreason.registry import Registry

LossAggregation = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"]
KLEstimator = Literal["k1", "k2", "k3"]


class AlgorithmConfig(BaseModel):
    """Fields every algorithm has. Subclasses add theirs with the paper's defaults; all are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kl_coef: float = Field(0.0, ge=0.0, description="weight of the KL-to-reference term (0: no reference model)")
    entropy_coef: float = Field(0.0, ge=0.0, description="entropy bonus weight")
    # Switches the controller reads (capabilities, not names):
    filter_zero_variance: bool = Field(False, description="drop groups with all-equal rewards and refill the "
                                                          "batch with new prompts (dynamic sampling)")
    overlong_buffer_frac: float = Field(0.0, ge=0.0, lt=1.0, description="soft overlong penalty over the last "
                                        "fraction of rollout.max_tokens (0: off)")
    overlong_penalty: float = Field(1.0, ge=0.0, description="reward subtracted at the length limit")
    # Truncated importance sampling between the rollout engine's and the learner's logprobs (metrics always on):
    tis_mode: Literal["off", "token", "sequence"] = "off"
    tis_cap: float = Field(2.0, gt=0.0, description="importance weights above this are truncated or masked")
    tis_action: Literal["truncate", "mask"] = "truncate"

    @property
    def needs_reference(self) -> bool:
        return self.kl_coef > 0


@dataclass(frozen=True)
class AdvantageInputs:
    rewards: torch.Tensor  # [B] float, one scalar reward per completion
    group_ids: torch.Tensor  # [B] long, completions of the same prompt share an id
    loss_mask: torch.Tensor  # [B, T] float, 1 on completion tokens


@dataclass(frozen=True)
class LossInputs:
    logprobs: torch.Tensor  # [B, T] current policy log p(token), carries grad
    old_logprobs: torch.Tensor  # [B, T] policy that the advantages refer to (no grad)
    advantages: torch.Tensor  # [B, T]
    loss_mask: torch.Tensor  # [B, T] float
    num_tokens: float  # completion tokens in the whole optimizer step (for token-mean over micro-batches)
    num_sequences: float  # sequences in the whole optimizer step
    max_tokens: int  # the generation limit (the constant of seq_mean_token_sum_norm)
    ref_logprobs: torch.Tensor | None = None  # [B, T] reference policy, when cfg.needs_reference
    entropy: torch.Tensor | None = None  # [B, T] per-token entropy of the current policy (carries grad)
    rollout_logprobs: torch.Tensor | None = None  # [B, T] the rollout engine's logprobs of the same tokens


AdvantageFn = Callable[[AdvantageInputs, AlgorithmConfig], torch.Tensor]
LossFn = Callable[[LossInputs, AlgorithmConfig], tuple[torch.Tensor, dict[str, float]]]


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    description: str
    paper: str
    config: type[AlgorithmConfig]
    advantage: AdvantageFn
    loss: LossFn


ALGORITHMS: Registry[AlgorithmSpec] = Registry("algorithm")


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    ALGORITHMS.register(spec.name, spec)
    return spec


def get_algorithm(name: str) -> AlgorithmSpec:
    return ALGORITHMS.get(name)
