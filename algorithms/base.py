"""The algorithm interface: one input record per function kind, a spec per algorithm, a registry of specs.

The learner never asks which algorithm runs: before its optimizer steps it computes the frozen quantities the
config's capability flags ask for (reference logprobs, critic values), then calls ``spec.advantage`` and, per
micro-batch, ``spec.loss``. The controller reads the flags too (``needs_greedy_baseline``), never the name.
Variants that differ by a switch are config fields of shared functions in :mod:`rlreason.algorithms.common`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from rlreason.registry import Registry

LossAggregation = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm",
                          "prompt_mean_token_mean"]
KLEstimator = Literal["k1", "k2", "k3"]
KLLocation = Literal["loss", "reward"]


class AlgorithmConfig(BaseModel):
    """Fields every algorithm has. Subclasses add theirs with the paper's defaults; all are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kl_coef: float = Field(0.0, ge=0.0, description="weight of the KL-to-reference term (0: no reference model)")
    kl_location: KLLocation = Field("loss", description="KL as a loss term, or as a per-token penalty in the "
                                                        "reward (before advantages)")
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

    @property
    def kl_in_reward(self) -> bool:
        return self.kl_coef > 0 and self.kl_location == "reward"

    @property
    def needs_value_model(self) -> bool:
        """A learned critic: the learner builds one and passes values to the advantage and loss functions."""
        return False

    @property
    def served_members(self) -> int:
        """Adapters beside the policy that the engines serve at once (a population's members)."""
        return 0

    @property
    def needs_greedy_baseline(self) -> bool:
        """One extra greedy completion per prompt, scored, its reward given as ``baseline_rewards``."""
        return False


@dataclass(frozen=True)
class AdvantageInputs:
    """What an advantage function may read. With KL in the reward, ``token_rewards`` carries the per-token
    penalty and ``rewards`` is each completion's total (score plus its summed penalty), so outcome-level
    algorithms see the KL too."""

    rewards: torch.Tensor  # [B] float, one scalar return per completion
    group_ids: torch.Tensor  # [B] long, completions of the same prompt share an id
    loss_mask: torch.Tensor  # [B, T] float, 1 on completion tokens
    token_rewards: torch.Tensor | None = None  # [B, T]: score on the last completion token, minus beta * KL_t
    values: torch.Tensor | None = None  # [B, T] critic values, when cfg.needs_value_model
    baseline_rewards: torch.Tensor | None = None  # [B] reward of the prompt's greedy completion


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
    group_ids: torch.Tensor | None = None  # [B] prompt of each row
    group_tokens: torch.Tensor | None = None  # [B] completion tokens of the row's prompt in the optimizer step
    num_groups: float = 0.0  # prompts in the optimizer step
    values: torch.Tensor | None = None  # [B, T] critic values (carry grad), when cfg.needs_value_model
    old_values: torch.Tensor | None = None  # [B, T] critic values before the step
    returns: torch.Tensor | None = None  # [B, T] value targets
    weights: torch.Tensor | None = None  # [B, T] per-token weights a primitive call brings (cross_entropy)


AdvantageFn = Callable[[AdvantageInputs, AlgorithmConfig], torch.Tensor]
LossFn = Callable[[LossInputs, AlgorithmConfig], tuple[torch.Tensor, dict[str, float]]]
ValueTargetFn = Callable[[AdvantageInputs, AlgorithmConfig], torch.Tensor]


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    description: str
    paper: str
    config: type[AlgorithmConfig]
    advantage: AdvantageFn
    loss: LossFn
    value_targets: ValueTargetFn | None = None  # [B, T] critic targets; required when the config needs a critic
    driver: str = "gradient"  # the loop that runs it: "gradient" (rollout, learner update, push) or "es"


ALGORITHMS: Registry[AlgorithmSpec] = Registry("algorithm")


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    ALGORITHMS.register(spec.name, spec)
    return spec


def get_algorithm(name: str) -> AlgorithmSpec:
    return ALGORITHMS.get(name)
