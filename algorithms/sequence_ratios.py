"""Losses that weigh the importance ratio otherwise than GRPO's hard token clip: GSPO, GMPO, CISPO and SAPO.
All use GRPO advantages.

- ``gspo`` (Zheng et al., arXiv 2507.18071): one ratio per sequence, s_i = exp(mean_t log(pi/pi_old)), clipped
  to [1 - 3e-4, 1 + 4e-4]; loss = -mean_i min(s_i A_i, clip(s_i) A_i). Gradients reach every token through s_i.
- ``gmpo`` (Zhao et al., arXiv 2507.20673): geometric mean of the token ratios, with each token's log-ratio
  clipped in log space to [-0.4, 0.4] on the side that the advantage's sign makes pessimistic.
- ``cispo`` (MiniMax-M1, arXiv 2506.13585): -sg(min(rho, 1 + eps_high)) * A * log pi, token mean over the batch;
  the clipped weight carries no gradient, so no token loses its gradient. The paper sets no lower bound and tunes
  only eps_high.
- ``sapo`` (Gao et al., arXiv 2511.20347): a soft gate instead of the hard clip: the token objective is
  f(rho) * A with f(rho) = (4 / tau) * sigmoid(tau * (rho - 1)), tau = tau_pos for A > 0 and tau_neg otherwise;
  f'(1) = 1, so on-policy it is the plain policy gradient, and far off-policy tokens fade out smoothly.
"""

from __future__ import annotations

import torch
from pydantic import Field

from rlreason.algorithms.base import AlgorithmSpec, LossAggregation, LossInputs, register_algorithm
from rlreason.algorithms.common import (aggregate_inputs, masked_mean, regularizer_per_token,
                                        rollout_importance_weights)
from rlreason.algorithms.grpo import GroupConfig, grpo_advantage


def _seq_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def _seq_weights(inputs: LossInputs, cfg) -> tuple[torch.Tensor, dict]:
    """[B] rollout importance weights for sequence-level losses (the mean token weight; 1 when TIS is off)."""
    weights, metrics = rollout_importance_weights(inputs, cfg)
    if weights is None:
        return inputs.loss_mask.new_ones(inputs.loss_mask.shape[0]), metrics  # same device as the batch
    return _seq_mean(weights, inputs.loss_mask), metrics


def _with_regularizers(loss: torch.Tensor, inputs: LossInputs, cfg, metrics: dict) -> tuple:
    """Add the shared KL / entropy terms, aggregated like the algorithm's tokens."""
    extra, reg_metrics = regularizer_per_token(inputs, cfg)
    if extra is not None:
        loss = loss + aggregate_inputs(extra, inputs, cfg.loss_aggregation)
    return loss, {**metrics, **reg_metrics}


class GSPOConfig(GroupConfig):
    name: str = "gspo"
    clip_eps_low: float = Field(3e-4, gt=0.0, lt=1.0, description="sequence ratio >= 1 - clip_eps_low")
    clip_eps_high: float = Field(4e-4, gt=0.0, lt=10.0, description="sequence ratio <= 1 + clip_eps_high")


def gspo_loss(inputs: LossInputs, cfg: GSPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
    mask = inputs.loss_mask
    seq_ratio = torch.exp(_seq_mean(inputs.logprobs - inputs.old_logprobs, mask))  # [B]
    adv = _seq_mean(inputs.advantages, mask)  # [B], the sequence's advantage
    clipped = seq_ratio.clamp(1 - cfg.clip_eps_low, 1 + cfg.clip_eps_high)
    seq_w, tis = _seq_weights(inputs, cfg)
    per_seq = -torch.minimum(seq_ratio * adv, clipped * adv) * seq_w
    has_tokens = (mask.sum(1) > 0).float()
    loss = (per_seq * has_tokens).sum() / max(inputs.num_sequences, 1.0)
    clip_frac = float(((seq_ratio * adv > clipped * adv).float() * has_tokens).sum() / has_tokens.sum().clamp(min=1))
    return _with_regularizers(loss, inputs, cfg, {"clip_frac": clip_frac,
                                                  "ratio_mean": float(seq_ratio.detach().mean()), **tis})


class GMPOConfig(GroupConfig):
    name: str = "gmpo"
    log_clip: float = Field(0.4, gt=0.0, description="token log-ratios are clipped to [-log_clip, log_clip]")


def gmpo_loss(inputs: LossInputs, cfg: GMPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
    mask, adv = inputs.loss_mask, inputs.advantages
    log_ratio = inputs.logprobs - inputs.old_logprobs
    sign = torch.sign(adv)
    # pessimistic bound in log space: min(sign*lr, sign*clip(lr)) * sign
    clipped = sign * torch.minimum(sign * log_ratio, sign * log_ratio.clamp(-cfg.log_clip, cfg.log_clip))
    seq_ratio = torch.exp(_seq_mean(clipped, mask))  # [B], geometric mean of clipped token ratios
    seq_adv = _seq_mean(adv, mask)
    has_tokens = (mask.sum(1) > 0).float()
    seq_w, tis = _seq_weights(inputs, cfg)
    loss = -(seq_ratio * seq_adv * seq_w * has_tokens).sum() / max(inputs.num_sequences, 1.0)
    clip_frac = masked_mean((clipped != log_ratio).float(), mask)
    return _with_regularizers(loss, inputs, cfg, {"clip_frac": clip_frac,
                                                  "ratio_mean": float(seq_ratio.detach().mean()), **tis})


class CISPOConfig(GroupConfig):
    name: str = "cispo"
    clip_eps_high: float = Field(4.0, gt=0.0, description="the IS weight is capped at 1 + clip_eps_high")
    loss_aggregation: LossAggregation = "token_mean"


def cispo_loss(inputs: LossInputs, cfg: CISPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
    mask = inputs.loss_mask
    ratio = torch.exp(inputs.logprobs - inputs.old_logprobs)
    weight = ratio.clamp(max=1 + cfg.clip_eps_high).detach()
    tis_weights, tis = rollout_importance_weights(inputs, cfg)
    if tis_weights is not None:
        weight = weight * tis_weights
    per_token = -weight * inputs.advantages * inputs.logprobs
    loss = aggregate_inputs(per_token, inputs, cfg.loss_aggregation)
    return _with_regularizers(loss, inputs, cfg, {
        "clip_frac": masked_mean((ratio > 1 + cfg.clip_eps_high).float(), mask),
        "ratio_mean": masked_mean(ratio.detach(), mask), **tis})


class SAPOConfig(GroupConfig):
    name: str = "sapo"
    tau_pos: float = Field(1.0, gt=0.0, description="gate temperature for positive advantages")
    tau_neg: float = Field(1.05, gt=0.0, description="gate temperature for negative advantages (sharper)")
    loss_aggregation: LossAggregation = "token_mean"


def sapo_loss(inputs: LossInputs, cfg: SAPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
    mask, adv = inputs.loss_mask, inputs.advantages
    ratio = torch.exp(inputs.logprobs - inputs.old_logprobs)
    tau = torch.where(adv > 0, torch.full_like(adv, cfg.tau_pos), torch.full_like(adv, cfg.tau_neg))
    gate = (4.0 / tau) * torch.sigmoid(tau * (ratio - 1.0))
    per_token = -gate * adv
    weights, tis = rollout_importance_weights(inputs, cfg)
    if weights is not None:
        per_token = per_token * weights
    loss = aggregate_inputs(per_token, inputs, cfg.loss_aggregation)
    return _with_regularizers(loss, inputs, cfg, {"ratio_mean": masked_mean(ratio.detach(), mask), **tis})


register_algorithm(AlgorithmSpec("gspo", "sequence-level length-normalised ratio and clipping",
                                 "arXiv:2507.18071", GSPOConfig, grpo_advantage, gspo_loss))
register_algorithm(AlgorithmSpec("gmpo", "geometric mean of token ratios, clipped in log space",
                                 "arXiv:2507.20673", GMPOConfig, grpo_advantage, gmpo_loss))
register_algorithm(AlgorithmSpec("cispo", "clipped stop-gradient IS weight x advantage x log-prob",
                                 "arXiv:2506.13585", CISPOConfig, grpo_advantage, cispo_loss))
register_algorithm(AlgorithmSpec("sapo", "soft sigmoid gate on the token ratio instead of a hard clip",
                                 "arXiv:2511.20347", SAPOConfig, grpo_advantage, sapo_loss))
