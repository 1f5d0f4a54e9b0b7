"""Shared pieces of the policy-gradient family: advantage normalisation, KL estimators, loss aggregation."""

from __future__ import annotations

import torch


def group_normalized_advantage(rewards: torch.Tensor, group_ids: torch.Tensor, scale: bool,
                               eps: float = 1e-6) -> torch.Tensor:
    """``(r - mean_group(r)) / (std_group(r) + eps)`` per completion; without ``scale`` only the mean is removed.

    rewards, group_ids: [B] -> [B] float32. Std is the unbiased sample std of the group (GRPO, arXiv 2402.03300,
    eq. 3). Computed in float64, and a group whose rewards are all equal gets exactly 0: in float32 the rounding
    error of ``r - mean`` (7 x 0.7 leaves ~6e-8) divided by ``std + eps`` pushed a whole group one way.
    """
    if rewards.numel() == 0:
        return torch.zeros_like(rewards, dtype=torch.float32)
    r = rewards.double()
    inverse, count = _group_index(group_ids)
    mean = r.new_zeros(count.numel()).index_add_(0, inverse, r) / count
    centred = r - mean[inverse]
    if scale:
        var = r.new_zeros(count.numel()).index_add_(0, inverse, centred.square()) / (count - 1).clamp(min=1)
        centred = centred / (var.sqrt()[inverse] + eps)
    return torch.where(equal_reward_groups(rewards, group_ids), 0.0, centred).float()


def _group_index(group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row -> group index [B], group sizes [G] as float64)."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    count = torch.zeros(int(inverse.max()) + 1, dtype=torch.float64, device=group_ids.device)
    return inverse, count.index_add_(0, inverse, torch.ones_like(inverse, dtype=torch.float64))


def equal_reward_groups(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """[B] bool: True on rows whose group's rewards are all exactly equal (no signal to learn from)."""
    inverse, count = _group_index(group_ids)
    r = rewards.double()
    low = r.new_full(count.shape, float("inf")).scatter_reduce_(0, inverse, r, "amin")
    high = r.new_full(count.shape, float("-inf")).scatter_reduce_(0, inverse, r, "amax")
    return (low == high)[inverse]


def group_sums(values: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """For each row, the sum of ``values`` over its group. [B] -> [B]"""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    totals = values.new_zeros(int(inverse.max()) + 1).index_add_(0, inverse, values)
    return totals[inverse]


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
              num_sequences: float, max_tokens: int, group_tokens: torch.Tensor | None = None,
              num_groups: float = 0.0) -> torch.Tensor:
    """Reduce a [B, T] per-token loss to a scalar; denominators are for the whole optimizer step.

    - token_mean: sum over all tokens / all tokens (DAPO, 2503.14476): long answers weigh more.
    - prompt_mean_token_mean: mean over all tokens of a prompt's completions, then over prompts (ScaleRL,
      2510.13786): every prompt counts once, and within it every token. Needs ``group_tokens`` ([B]).
    - seq_mean_token_mean: mean over each sequence's tokens, then over sequences (GRPO).
    - seq_mean_token_sum: sum over each sequence's tokens, then mean over sequences.
    - seq_mean_token_sum_norm: sum over tokens / max_tokens, then mean over sequences (Dr.GRPO, 2503.20783).
    """
    masked = per_token * mask
    if mode == "token_mean":
        return masked.sum() / max(num_tokens, 1.0)
    if mode == "prompt_mean_token_mean":
        if group_tokens is None:
            raise ValueError("prompt_mean_token_mean needs the per-row token count of each prompt")
        return (masked.sum(dim=1) / group_tokens.clamp(min=1.0)).sum() / max(num_groups, 1.0)
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


def aggregate_inputs(per_token: torch.Tensor, inputs, mode: str) -> torch.Tensor:
    """``aggregate`` with the step's counts taken from a ``LossInputs``."""
    return aggregate(per_token, inputs.loss_mask, mode, inputs.num_tokens, inputs.num_sequences,
                     inputs.max_tokens, inputs.group_tokens, inputs.num_groups)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float((values * mask).sum() / mask.sum().clamp(min=1.0))


def regularizer_per_token(inputs, cfg) -> tuple[torch.Tensor | None, dict[str, float]]:
    """The shared KL-to-reference and entropy-bonus terms per token ([B, T]), or None when both are off.

    ``inputs`` is a ``LossInputs``; ``cfg`` any ``AlgorithmConfig`` (``kl_coef``, ``kl_estimator``, ``entropy_coef``).
    """
    extra, metrics = None, {}
    if inputs.ref_logprobs is not None and cfg.kl_coef > 0 and cfg.kl_location == "loss":
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


def effective_sample_size(*parts: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Normalised effective sample size of importance weights, ESS = (sum w)^2 / (n sum w^2) in (0, 1]: 1 when
    every weight is equal (on-policy), falling towards 1/n as a few samples dominate (a collapse predictor for
    stale data, VCPO arXiv 2602.17616). Over tokens (``is_ess``) and over sequences, whose weight is the product
    of their tokens' (``is_ess_seq``). ``parts``: ([B, T] per-token log-ratios, [B, T] mask) pairs, pooled (the
    micro-batches of one optimizer step)."""
    def ess(logs: torch.Tensor) -> float:
        if logs.numel() == 0:
            return float("nan")
        w = torch.exp(logs.double() - logs.double().max())  # scale-free: shift for stability
        return float(w.sum() ** 2 / (w.numel() * (w ** 2).sum()))

    tokens = torch.cat([(log_w.detach() * m)[m > 0] for log_w, m in parts])
    sequences = torch.cat([(log_w.detach() * m).sum(1)[m.sum(1) > 0] for log_w, m in parts])
    return {"is_ess": ess(tokens), "is_ess_seq": ess(sequences)}


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


# -- token-level returns (PPO, REINFORCE++) ------------------------------------------------------------------
def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """[B, T] completion mask -> [B] index of each row's last completion token (0 for empty rows)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * (mask > 0)).max(dim=1).values


def token_level_rewards(scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None,
                        kl_coef: float = 0.0) -> torch.Tensor:
    """The outcome score on each completion's last token, minus ``kl_coef * kl_t`` on every token. [B, T]"""
    out = torch.zeros_like(mask, dtype=torch.float32)
    rows = torch.arange(mask.shape[0], device=mask.device)
    out[rows, last_token_index(mask)] = scores.float() * (mask.sum(1) > 0).float()
    if kl is not None and kl_coef > 0:
        out = out - kl_coef * kl.detach() * mask
    return out


def returns_to_go(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = sum_{s >= t} gamma^(s - t) r_s over completion tokens. [B, T] -> [B, T]"""
    out, running = torch.zeros_like(token_rewards), token_rewards.new_zeros(token_rewards.shape[0])
    for t in range(token_rewards.shape[1] - 1, -1, -1):
        running = token_rewards[:, t] + gamma * running * mask[:, t]
        out[:, t] = running * mask[:, t]
    return out


def gae(token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., arXiv 1506.02438) over completion tokens.

    delta_t = r_t + gamma * V_{t+1} - V_t (V after the last token is 0), A_t = delta_t + gamma * lam * A_{t+1}.
    Returns (advantages, returns = advantages + values), both [B, T] and 0 off the mask."""
    values = values.detach() * mask
    adv = torch.zeros_like(token_rewards)
    next_value = next_adv = token_rewards.new_zeros(token_rewards.shape[0])
    for t in range(token_rewards.shape[1] - 1, -1, -1):
        m = mask[:, t]
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        current = (delta + gamma * lam * next_adv) * m
        adv[:, t] = current
        # off the mask (padding, prompt) carry the next token's state through unchanged
        next_value = torch.where(m > 0, values[:, t], next_value)
        next_adv = torch.where(m > 0, current, next_adv)
    return adv, (adv + values) * mask


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalise over every masked entry of the batch (global normalisation): (x - mean) / std, in float64 so
    that a batch of equal values whitens to ~0 (float32's rounding, divided by sqrt(eps), reached 1e-3)."""
    x, m = values.double(), mask.double()
    n = m.sum().clamp(min=1.0)
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / n
    out = (x - mean) if shift_mean else x
    return (out * torch.rsqrt(var + eps) * m).to(values.dtype)
