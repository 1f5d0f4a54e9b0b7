"""GRPO: group-relative advantages with a clipped token-ratio surrogate (Shao et al., arXiv 2402.03300).

Advantage (outcome supervision, eq. 3 of the paper): every token of completion i gets
    A_i = (r_i - mean(r_group)) / (std(r_group) + eps)
Loss per token, with ratio rho = pi(a|s) / pi_old(a|s):
    -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) + beta * KL_k3(pi || pi_ref) - c_H * H(pi)
aggregated per sequence then over sequences (``seq_mean_token_mean``). Defaults follow the paper except
``kl_coef = 0``: DAPO and Dr.GRPO found the reference term unnecessary for verifiable rewards, and dropping it
saves a model copy. Set ``kl_coef: 0.04`` for the paper's setting.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from rlreason.algorithms.base import (AdvantageInputs, AlgorithmConfig, AlgorithmSpec, KLEstimator,
                                      LossAggregation, LossInputs, register_algorithm)
from rlreason.algorithms.common import (aggregate_inputs, group_normalized_advantage, masked_mean,
                                        regularizer_per_token, rollout_importance_weights)


class PolicyConfig(AlgorithmConfig):
    """Fields of every policy-gradient loss here: how the KL is estimated and how tokens are averaged."""

    kl_estimator: KLEstimator = "k3"
    loss_aggregation: LossAggregation = "seq_mean_token_mean"


class ClipConfig(PolicyConfig):
    """The clipped token-ratio surrogate's fields (``clipped_surrogate_loss``)."""

    clip_eps_low: float = Field(0.2, gt=0.0, lt=1.0, description="lower ratio clip: rho >= 1 - clip_eps_low")
    clip_eps_high: float = Field(0.2, gt=0.0, lt=10.0, description="upper ratio clip: rho <= 1 + clip_eps_high")
    dual_clip: float | None = Field(None, gt=1.0, description="dual-clip constant c: for negative advantages the "
                                    "token objective is at least c * A (Ye et al., arXiv 1912.09729); None: off")


class GroupConfig(PolicyConfig):
    """Group-relative advantages (``grpo_advantage``)."""

    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="divide group-centred rewards by the std of their group, of the whole batch, or not")


class GRPOConfig(GroupConfig, ClipConfig):
    name: str = "grpo"


def grpo_advantage(inputs: AdvantageInputs, cfg: GRPOConfig) -> torch.Tensor:
    """[B] rewards -> [B, T] advantages, constant over each completion's tokens, zero elsewhere."""
    adv = group_normalized_advantage(inputs.rewards, inputs.group_ids, scale=cfg.scale_rewards == "group")
    if cfg.scale_rewards == "batch":  # batch-level normalisation (as in ScaleRL, arXiv 2510.13786)
        adv = adv / (adv.std() + 1e-6) if adv.numel() > 1 else adv
    return adv[:, None] * inputs.loss_mask


def clipped_surrogate_loss(inputs: LossInputs, cfg: GRPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-style clipped surrogate with optional KL and entropy terms; returns (scalar loss, metrics)."""
    mask = inputs.loss_mask
    log_ratio = inputs.logprobs - inputs.old_logprobs
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high)
    adv = inputs.advantages
    per_token = -torch.minimum(ratio * adv, clipped * adv)
    if cfg.dual_clip is not None:  # bound the loss of very large ratios on negative advantages
        per_token = torch.where(adv < 0, torch.minimum(per_token, -cfg.dual_clip * adv), per_token)
    weights, tis_metrics = rollout_importance_weights(inputs, cfg)
    if weights is not None:
        per_token = per_token * weights
    metrics = {"clip_frac": masked_mean(((ratio * adv) > (clipped * adv)).float(), mask),
               "ratio_mean": masked_mean(ratio.detach(), mask)}
    extra, reg_metrics = regularizer_per_token(inputs, cfg)
    if extra is not None:
        per_token = per_token + extra
    metrics.update(reg_metrics, **tis_metrics)
    return aggregate_inputs(per_token, inputs, cfg.loss_aggregation), metrics


GRPO = register_algorithm(AlgorithmSpec(
    name="grpo", description="group-normalised advantages, clipped token ratio, optional KL to a reference",
    paper="arXiv:2402.03300", config=GRPOConfig, advantage=grpo_advantage, loss=clipped_surrogate_loss))
