"""Shared pieces of the policy-gradient family: advantage normalisation, KL estimators, loss aggregation."""

from __future__ import annotations

import torch


def group_normalized_advantage(rewards: torch.Tensor, group_ids: torch.Tensor, scale: bool,
                               eps: float = 1e-6) -> torch.Tensor:
    """``(r - mean_group(r)) / (std_group(r) + eps)`` per completion; without ``scale`` only the mean is removed.

    rewards, group_ids: [B] -> [B]. Std is the unbiased sample std of the group (GRPO, arXiv 2402.03300, eq. 3).
    """
    out = torch.zeros_like(rewards, dtype=torch.float32)
    for gid in torch.unique(group_ids):
        idx = group_ids == gid
        r = rewards[idx].float()
        centred = r - r.mean()
        if scale:
            std = r.std(unbiased=True) if r.numel() > 1 else torch.tensor(0.0)
            centred = centred / (std + eps)
        out[idx] = centred
    return out


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from sampled tokens (Schulman, "Approximating KL divergence").

    k1 = log r, k2 = (log r)^2 / 2, k3 = exp(-log r) - 1 + log r, with log r = logp - logp_ref. [B, T] -> [B, T]
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.pow(2)
    return torch.exp(-log_ratio) - 1 + log_ratio


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, num_tokens: float,
              num_sequences: float, max_tokens: int) -> torch.Tensor:
    """Reduce a [B, T] per-token loss to a scalar; denominators are for the whole optimizer step.

    - token_mean: sum over all tokens / all tokens (DAPO, 2503.14476): long answers weigh more.
    - seq_mean_token_mean: mean over each sequence's tokens, then over sequences (GRPO).
    - seq_mean_token_sum: sum over each sequence's tokens, then mean over sequences.
    - seq_mean_token_sum_norm: sum over tokens / max_tokens, then mean over sequences (Dr.GRPO, 2503.20783).
    """
    masked = per_token * mask
    if mode == "token_mean":
        return masked.sum() / max(num_tokens, 1.0)
    seq_sum = masked.sum(dim=1)
    if mode == "seq_mean_token_mean":
        seq = seq_sum / mask.sum(dim=1).clamp(min=1.0)
    elif mode == "seq_mean_token_sum":
        seq = seq_sum
    elif mode == "seq_mean_token_sum_norm":
        seq = seq_sum / max_tokens
    else:
        raise ValueError(f"unknown loss aggregation {mode!r}")
    return seq.sum() / max(num_sequences, 1.0)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float((values * mask).sum() / mask.sum().clamp(min=1.0))


def regularizer_per_token(inputs, cfg) -> tuple[torch.Tensor | None, dict[str, float]]:
    """The shared KL-to-reference and entropy-bonus terms per token ([B, T]), or None when both are off.

    ``inputs`` is a ``LossInputs``; ``cfg`` any ``AlgorithmConfig`` (``kl_coef``, ``kl_estimator``, ``entropy_coef``).
    """
    extra, metrics = None, {}
    if inputs.ref_logprobs is not None and cfg.kl_coef > 0:
        kl = kl_penalty(inputs.logprobs, inputs.ref_logprobs, getattr(cfg, "kl_estimator", "k3"))
        extra = cfg.kl_coef * kl
        metrics["kl"] = masked_mean(kl.detach(), inputs.loss_mask)
    if inputs.entropy is not None and cfg.entropy_coef > 0:
        bonus = -cfg.entropy_coef * inputs.entropy
        extra = bonus if extra is None else extra + bonus
    return extra, metrics


def overlong_penalty(lengths: torch.Tensor, max_tokens: int, buffer_frac: float, penalty: float) -> torch.Tensor:
    """DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13): 0 up to ``max - buffer`` tokens, then falling
    linearly to ``-penalty`` at ``max_tokens``. lengths: [B] -> [B]."""
    buffer = buffer_frac * max_tokens
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    over = (lengths.float() - (max_tokens - buffer)).clamp(min=0.0)
    return -penalty * (over / buffer).clamp(max=1.0)


def rollout_importance_weights(inputs, cfg) -> tuple[torch.Tensor | None, dict[str, float]]:
    """Truncated importance sampling (TIS) between the policy the learner holds (``old_logprobs``) and the
    rollout engine that sampled (``rollout_logprobs``): w = pi_old / pi_rollout per token, or its product over the
    sequence; weights above ``tis_cap`` are truncated to the cap or masked to 0. Returns ([B, T] detached weights,
    or None when off, and metrics that are reported whether TIS is on or not)."""
    if inputs.rollout_logprobs is None:
        return None, {}
    mask = inputs.loss_mask
    log_w = (inputs.old_logprobs - inputs.rollout_logprobs).detach() * mask
    if cfg.tis_mode == "sequence":
        log_w = log_w.sum(1, keepdim=True).expand_as(mask)
    w = torch.exp(log_w.clamp(max=20.0))
    over = (w > cfg.tis_cap).float()
    metrics = {"tis_weight_mean": masked_mean(w, mask), "tis_over_cap_frac": masked_mean(over, mask)}
    if cfg.tis_mode == "off":
        return None, metrics
    weights = w.clamp(max=cfg.tis_cap) if cfg.tis_action == "truncate" else w * (1.0 - over)
    return weights, metrics
