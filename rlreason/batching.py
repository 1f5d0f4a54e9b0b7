"""Scored groups -> a padded ``TrainBatch``; a batch -> the algorithm's ``AdvantageInputs`` and step counts.

Rows are prompt + completion, right-padded to the longest row; one row per multi-turn episode, its loss mask 1 on
the tokens the model sampled only (the environment's tokens are context). Reward shaping that needs no model (DAPO's
overlong penalty) happens here; shaping that does (KL in the reward) happens in the learner through
``advantage_inputs``. Advantage functions see only these inputs, never the algorithm's name.
"""

from __future__ import annotations

import torch

from rlreason.algorithms import AdvantageInputs, AlgorithmConfig
from rlreason.algorithms.common import overlong_penalty, token_level_rewards
from rlreason.types import ScoredGroup, TrainBatch


def build_train_batch(groups: list[ScoredGroup], algo: AlgorithmConfig, pad_id: int = 0,
                      max_tokens: int | None = None) -> TrainBatch:
    """Pad the groups into a batch and shape the rewards (overlong penalty)."""
    samples = [(c, r.score, gid) for gid, g in enumerate(groups) for c, r in zip(g.completions, g.results)]
    rows = [(row, score, gid, s) for s, (c, score, gid) in enumerate(samples) for row in (c, *c.extra_rows)]
    split = len(rows) > len(samples)  # an agent episode's calls in several rows: they share its advantage
    width = max(len(c.prompt_ids) + len(c.completion_ids) for c, _, _, _ in rows)
    b = len(rows)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    attention = torch.zeros((b, width), dtype=torch.long)
    loss_mask = torch.zeros((b, width), dtype=torch.float32)
    rollout_logprobs = torch.zeros((b, width), dtype=torch.float32)
    for i, (c, _, _, _) in enumerate(rows):
        p, n = len(c.prompt_ids), len(c.completion_ids)
        input_ids[i, : p + n] = torch.tensor(c.prompt_ids + c.completion_ids)
        attention[i, : p + n] = 1
        loss_mask[i, p: p + n] = 1.0 if c.mask is None else torch.tensor(c.mask, dtype=torch.float32)
        rollout_logprobs[i, p: p + n] = torch.tensor(c.logprobs, dtype=torch.float32)  # (0 on environment tokens)
    rewards = torch.tensor([score for _, score, _, _ in rows], dtype=torch.float32)
    if algo.overlong_buffer_frac > 0 and max_tokens:
        lengths = torch.tensor([c.sampled for c, _, _, _ in rows])
        rewards = rewards + overlong_penalty(lengths, max_tokens, algo.overlong_buffer_frac, algo.overlong_penalty)
    baseline = None
    if all(g.baseline is not None for g in groups):
        baseline = torch.tensor([groups[gid].baseline.score for _, _, gid, _ in rows], dtype=torch.float32)
    return TrainBatch(input_ids=input_ids, attention_mask=attention, loss_mask=loss_mask,
                      rollout_logprobs=rollout_logprobs, rewards=rewards,
                      group_ids=torch.tensor([gid for _, _, gid, _ in rows], dtype=torch.long),
                      policy_version=torch.tensor([c.policy_version for c, _, _, _ in rows], dtype=torch.long),
                      baseline_rewards=baseline,
                      sample_ids=torch.tensor([s for *_, s in rows], dtype=torch.long) if split else None)


def advantage_inputs(batch: TrainBatch, algo: AlgorithmConfig, kl: torch.Tensor | None = None,
                     values: torch.Tensor | None = None) -> AdvantageInputs:
    """The advantage function's view of a batch. With KL in the reward (``kl``: [B, T] per-token estimate),
    every token pays ``kl_coef * kl_t`` and each completion's scalar reward includes the sum of its payments."""
    coef = algo.kl_coef if (kl is not None and algo.kl_in_reward) else 0.0
    token_rewards = token_level_rewards(batch.rewards, batch.loss_mask, kl, coef)
    rewards = batch.rewards
    if coef > 0:
        rewards = rewards - coef * (kl * batch.loss_mask).sum(1)
    return AdvantageInputs(rewards=rewards, group_ids=batch.group_ids, loss_mask=batch.loss_mask,
                           token_rewards=token_rewards, values=values, baseline_rewards=batch.baseline_rewards)


def compute_advantages(batch: TrainBatch, algo: AlgorithmConfig) -> torch.Tensor:
    """Advantages of algorithms that need no model output (for inspection and tests). [B, T]"""
    from rlreason.algorithms import get_algorithm

    return sample_advantages(batch, advantage_inputs(batch, algo), get_algorithm(algo.name).advantage, algo)


def sample_advantages(batch: TrainBatch, inputs: AdvantageInputs, advantage, algo: AlgorithmConfig) -> torch.Tensor:
    """``advantage(inputs, algo)`` [B, T], with the rows of one sample (``batch.sample_ids``: an agent episode's
    calls that did not join into one row) counted once: the algorithm sees each sample's first row, and the other
    rows get that row's advantage (its mean over the row's tokens) on their own tokens."""
    if batch.sample_ids is None:
        return advantage(inputs, algo)
    ids = batch.sample_ids
    first = torch.ones_like(ids, dtype=torch.bool)
    first[1:] = ids[1:] != ids[:-1]
    leads = first.nonzero().squeeze(1)
    pick = {k: (v[leads] if isinstance(v, torch.Tensor) else v) for k, v in vars(inputs).items()}
    lead_adv = advantage(type(inputs)(**pick), algo)
    out = torch.zeros_like(inputs.loss_mask, dtype=lead_adv.dtype)
    out[leads] = lead_adv
    mask = inputs.loss_mask[leads]
    scalar = (lead_adv * mask).sum(1) / mask.sum(1).clamp(min=1)
    owner = torch.cumsum(first.long(), 0) - 1  # each row's sample, as an index into leads
    rest = (~first).nonzero().squeeze(1)
    out[rest] = scalar[owner[rest]].unsqueeze(1) * inputs.loss_mask[rest]
    return out


def step_counts(batch: TrainBatch, rows: torch.Tensor) -> dict:
    """Normalisers of one optimizer step over ``rows``: tokens, sequences, prompts, and per row the completion
    tokens of its prompt within the step (``group_tokens``, indexed like ``batch``)."""
    mask = batch.loss_mask[rows]
    tokens = mask.sum(1)
    uniq, inverse = torch.unique(batch.group_ids[rows], return_inverse=True)
    totals = tokens.new_zeros(len(uniq)).index_add_(0, inverse, tokens)
    group_tokens = batch.loss_mask.new_zeros(batch.size)
    group_tokens[rows] = totals[inverse]
    return {"num_tokens": float(tokens.sum()), "num_sequences": float(len(rows)), "num_groups": float(len(uniq)),
            "group_tokens": group_tokens}
