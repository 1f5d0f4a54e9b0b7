"""GRPO's relatives that change only the baseline or the normalisations; they reuse GRPO's clipped surrogate.

- ``dr_grpo`` (Liu et al., "Understanding R1-Zero-Like Training", arXiv 2503.20783): no division by the group std
  (``scale_rewards="none"``) and no per-length normalisation: each sequence's token sum over a constant
  (``seq_mean_token_sum_norm``), which removes GRPO's bias towards long wrong answers.
- ``rloo`` (Ahmadian et al., "Back to Basics", arXiv 2402.14740): leave-one-out baseline,
  A_i = r_i - mean_{j != i} r_j = G/(G-1) * (r_i - mean_j r_j), on the sequence log-probability (token sum).
- ``remax`` (Li et al., arXiv 2310.10505): the baseline is the reward of the prompt's greedy completion,
  A_i = r_i - r(greedy); the controller samples that extra completion (``needs_greedy_baseline``).
- ``opo`` (Hao et al., "On-Policy RL with Optimal Reward Baseline", arXiv 2505.23585): the length-weighted
  group mean b = sum_j l_j r_j / sum_j l_j, the variance-minimising baseline when the gradient norm of a
  completion grows with its length; strictly on-policy (one optimizer step per batch, as the defaults are).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from rlreason.algorithms.base import AdvantageInputs, AlgorithmSpec, LossAggregation, register_algorithm
from rlreason.algorithms.common import equal_reward_groups, group_normalized_advantage, group_sums
from rlreason.algorithms.grpo import ClipConfig, GRPOConfig, clipped_surrogate_loss, grpo_advantage


class DrGRPOConfig(GRPOConfig):
    name: str = "dr_grpo"
    scale_rewards: Literal["group", "batch", "none"] = "none"
    loss_aggregation: LossAggregation = "seq_mean_token_sum_norm"


class RLOOConfig(GRPOConfig):
    name: str = "rloo"
    loss_aggregation: LossAggregation = "seq_mean_token_sum"


def leave_one_out_advantage(inputs: AdvantageInputs, cfg: RLOOConfig) -> torch.Tensor:
    """[B] rewards -> [B, T]: r_i minus the mean of the other completions of its group."""
    centred = group_normalized_advantage(inputs.rewards, inputs.group_ids, scale=False)
    sizes = group_sums(torch.ones_like(centred), inputs.group_ids)
    adv = centred * sizes / (sizes - 1).clamp(min=1)
    return adv[:, None] * inputs.loss_mask


register_algorithm(AlgorithmSpec(
    name="dr_grpo", description="GRPO without std and length normalisation (unbiased token sums)",
    paper="arXiv:2503.20783", config=DrGRPOConfig, advantage=grpo_advantage, loss=clipped_surrogate_loss))
register_algorithm(AlgorithmSpec(
    name="rloo", description="REINFORCE with a leave-one-out baseline over the group",
    paper="arXiv:2402.14740", config=RLOOConfig, advantage=leave_one_out_advantage, loss=clipped_surrogate_loss))


class DAPOConfig(GRPOConfig):
    """DAPO (Yu et al., arXiv 2503.14476): clip-higher, token-level mean, dynamic sampling, soft overlong
    punishment, no KL. All four are switches of shared code; the loss is GRPO's clipped surrogate."""

    name: str = "dapo"
    clip_eps_low: float = Field(0.2, gt=0.0, lt=1.0)
    clip_eps_high: float = Field(0.28, gt=0.0, lt=10.0)
    loss_aggregation: LossAggregation = "token_mean"
    filter_zero_variance: bool = True
    overlong_buffer_frac: float = Field(0.2, ge=0.0, lt=1.0)


register_algorithm(AlgorithmSpec(
    name="dapo", description="clip-higher, token-mean loss, dynamic sampling, soft overlong penalty, no KL",
    paper="arXiv:2503.14476", config=DAPOConfig, advantage=grpo_advantage, loss=clipped_surrogate_loss))


class ReMaxConfig(ClipConfig):
    name: str = "remax"
    loss_aggregation: LossAggregation = "seq_mean_token_sum"

    @property
    def needs_greedy_baseline(self) -> bool:
        return True


def greedy_baseline_advantage(inputs: AdvantageInputs, cfg: ReMaxConfig) -> torch.Tensor:
    if inputs.baseline_rewards is None:
        raise ValueError("remax needs the greedy completion's reward (AdvantageInputs.baseline_rewards)")
    return (inputs.rewards - inputs.baseline_rewards)[:, None] * inputs.loss_mask


class OPOConfig(ClipConfig):
    name: str = "opo"
    loss_aggregation: LossAggregation = "seq_mean_token_sum"


def length_weighted_baseline_advantage(inputs: AdvantageInputs, cfg: OPOConfig) -> torch.Tensor:
    """r_i minus the length-weighted mean reward of its group, in float64; 0 for groups of equal rewards."""
    lengths = inputs.loss_mask.sum(1).double()
    rewards = inputs.rewards.double()
    baseline = group_sums(lengths * rewards, inputs.group_ids) / group_sums(lengths, inputs.group_ids).clamp(min=1.0)
    adv = torch.where(equal_reward_groups(inputs.rewards, inputs.group_ids), 0.0, rewards - baseline).float()
    return adv[:, None] * inputs.loss_mask


register_algorithm(AlgorithmSpec(
    name="remax", description="REINFORCE with the greedy completion's reward as the baseline",
    paper="arXiv:2310.10505", config=ReMaxConfig, advantage=greedy_baseline_advantage, loss=clipped_surrogate_loss))
register_algorithm(AlgorithmSpec(
    name="opo", description="length-weighted group-mean baseline (optimal baseline), strictly on-policy",
    paper="arXiv:2505.23585", config=OPOConfig, advantage=length_weighted_baseline_advantage,
    loss=clipped_surrogate_loss))
