"""Algorithms whose advantage varies along the completion: a learned critic (PPO) or returns-to-go with the KL
penalty inside the reward (REINFORCE++). All reuse GRPO's clipped token-ratio surrogate.

- ``ppo`` (Schulman et al., arXiv 1707.06347; RLHF form of Ouyang et al., arXiv 2203.02155): per-token reward
  r_t = score * [t = last] - beta * KL_k1(t); GAE(gamma, lambda) over a learned critic's values, advantages
  whitened over the batch; loss = clipped surrogate + vf_coef * 0.5 * max((V - R)^2, (V_clip - R)^2) with
  V_clip = V_old + clip(V - V_old, -value_clip, value_clip). Epochs and minibatches: ``train.epochs`` /
  ``train.minibatches`` (see ``recipes/ppo.yaml``).
- ``reinforce_pp`` (Hu et al., arXiv 2501.03262): the same per-token reward with gamma = 1 returns-to-go and no
  critic; advantages normalised over the whole batch (global normalisation) rather than per prompt.
- ``reinforce_pp_baseline``: the paper's variant for reasoning with several samples per prompt: the group mean
  is subtracted first, then advantages are divided by the batch std; the KL (k2) goes in the loss.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator

from rlreason.algorithms.base import (AdvantageInputs, AlgorithmSpec, KLEstimator, KLLocation, LossAggregation,
                                      LossInputs, register_algorithm)
from rlreason.algorithms.common import (aggregate_inputs, gae, group_normalized_advantage, masked_mean,
                                        returns_to_go, whiten)
from rlreason.algorithms.grpo import ClipConfig, clipped_surrogate_loss


def _token_rewards(inputs: AdvantageInputs) -> torch.Tensor:
    if inputs.token_rewards is None:
        raise ValueError("this algorithm needs per-token rewards (AdvantageInputs.token_rewards)")
    return inputs.token_rewards


class PPOConfig(ClipConfig):
    name: str = "ppo"
    critic: Literal["separate", "head", "none"] = Field(
        "separate", description="value model: a copy of the policy's trunk with a value head, or a head on the "
                                "policy's own trunk")
    gamma: float = Field(1.0, gt=0.0, le=1.0, description="discount of GAE")
    lam: float = Field(0.95, ge=0.0, le=1.0, description="lambda of GAE")
    value_clip: float = Field(0.2, gt=0.0, description="new values stay within this of the old ones")
    vf_coef: float = Field(0.5, ge=0.0, description="weight of the value loss")
    kl_coef: float = Field(0.01, ge=0.0)
    kl_location: KLLocation = "reward"
    kl_estimator: KLEstimator = "k1"
    loss_aggregation: LossAggregation = "token_mean"

    @field_validator("critic")
    @classmethod
    def _has_critic(cls, critic: str) -> str:
        if critic == "none":
            raise ValueError("ppo needs a value model (allowed: separate, head)")
        return critic

    @property
    def needs_value_model(self) -> bool:
        return True


def ppo_advantage(inputs: AdvantageInputs, cfg: PPOConfig) -> torch.Tensor:
    if inputs.values is None:
        raise ValueError("ppo needs critic values (AdvantageInputs.values)")
    adv, _ = gae(_token_rewards(inputs), inputs.values, inputs.loss_mask, cfg.gamma, cfg.lam)
    return whiten(adv, inputs.loss_mask)


def ppo_value_targets(inputs: AdvantageInputs, cfg: PPOConfig) -> torch.Tensor:
    return gae(_token_rewards(inputs), inputs.values, inputs.loss_mask, cfg.gamma, cfg.lam)[1]


def ppo_loss(inputs: LossInputs, cfg: PPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate plus the clipped value loss (same aggregation)."""
    if inputs.values is None or inputs.old_values is None or inputs.returns is None:
        raise ValueError("ppo's loss needs values, old_values and returns in LossInputs")
    loss, metrics = clipped_surrogate_loss(inputs, cfg)
    v, old, target = inputs.values, inputs.old_values, inputs.returns
    v_clipped = old + (v - old).clamp(-cfg.value_clip, cfg.value_clip)
    unclipped_err, clipped_err = (v - target) ** 2, (v_clipped - target) ** 2
    value_loss = aggregate_inputs(0.5 * torch.maximum(unclipped_err, clipped_err), inputs, cfg.loss_aggregation)
    metrics.update(value_loss=float(value_loss.detach()),
                   value_clip_frac=masked_mean((clipped_err > unclipped_err).float(), inputs.loss_mask),
                   value_mean=masked_mean(v.detach(), inputs.loss_mask))
    return loss + cfg.vf_coef * value_loss, metrics


class ReinforcePPConfig(ClipConfig):
    name: str = "reinforce_pp"
    gamma: float = Field(1.0, gt=0.0, le=1.0, description="discount of the returns-to-go")
    kl_coef: float = Field(0.01, ge=0.0)
    kl_location: KLLocation = "reward"
    kl_estimator: KLEstimator = "k1"
    loss_aggregation: LossAggregation = "token_mean"


def reinforce_pp_advantage(inputs: AdvantageInputs, cfg: ReinforcePPConfig) -> torch.Tensor:
    """Returns-to-go of the KL-shaped token rewards, normalised over all tokens of the batch."""
    mask = inputs.loss_mask
    return whiten(returns_to_go(_token_rewards(inputs), mask, cfg.gamma), mask)


class ReinforcePPBaselineConfig(ClipConfig):
    name: str = "reinforce_pp_baseline"
    kl_coef: float = Field(0.01, ge=0.0)
    kl_location: KLLocation = "loss"
    kl_estimator: KLEstimator = "k2"
    loss_aggregation: LossAggregation = "token_mean"


def reinforce_pp_baseline_advantage(inputs: AdvantageInputs, cfg: ReinforcePPBaselineConfig) -> torch.Tensor:
    """r_i - mean(group), divided by the std of those centred rewards over the whole batch."""
    centred = group_normalized_advantage(inputs.rewards, inputs.group_ids, scale=False)
    std = centred.std() if centred.numel() > 1 else centred.new_tensor(0.0)
    return (centred / (std + 1e-6))[:, None] * inputs.loss_mask


register_algorithm(AlgorithmSpec(
    "ppo", "learned critic, GAE, clipped surrogate and clipped value loss, KL in the reward",
    "arXiv:1707.06347", PPOConfig, ppo_advantage, ppo_loss, value_targets=ppo_value_targets))
register_algorithm(AlgorithmSpec(
    "reinforce_pp", "token-level KL in the reward, returns-to-go, global batch normalisation, no critic",
    "arXiv:2501.03262", ReinforcePPConfig, reinforce_pp_advantage, clipped_surrogate_loss))
register_algorithm(AlgorithmSpec(
    "reinforce_pp_baseline", "group-mean baseline then batch-std normalisation, k2 KL in the loss",
    "arXiv:2501.03262", ReinforcePPBaselineConfig, reinforce_pp_baseline_advantage, clipped_surrogate_loss))
