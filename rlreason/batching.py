"""Scored groups -> a padded ``TrainBatch`` with the algorithm's advantages.

Rows are prompt + completion, right-padded to the longest row. The algorithm's advantage function sees only
rewards, group ids and the completion mask (``AdvantageInputs``), never the algorithm's name.
"""

from __future__ import annotations

import torch

from rlreason.algorithms import AdvantageInputs, AlgorithmConfig, get_algorithm
from rlreason.algorithms.common import overlong_penalty
from rlreason.types import ScoredGroup, TrainBatch


def build_train_batch(groups: list[ScoredGroup], algo: AlgorithmConfig, pad_id: int = 0,
                      max_tokens: int | None = None) -> TrainBatch:
    """Pad the groups into a batch; shape rewards (overlong penalty) and compute the algorithm's advantages."""
    rows = [(c, r.score, gid) for gid, g in enumerate(groups) for c, r in zip(g.completions, g.results)]
    width = max(len(c.prompt_ids) + len(c.completion_ids) for c, _, _ in rows)
    b = len(rows)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    attention = torch.zeros((b, width), dtype=torch.long)
    loss_mask = torch.zeros((b, width), dtype=torch.float32)
    rollout_logprobs = torch.zeros((b, width), dtype=torch.float32)
    for i, (c, _, _) in enumerate(rows):
        p, n = len(c.prompt_ids), len(c.completion_ids)
        input_ids[i, : p + n] = torch.tensor(c.prompt_ids + c.completion_ids)
        attention[i, : p + n] = 1
        loss_mask[i, p: p + n] = 1.0
        rollout_logprobs[i, p: p + n] = torch.tensor(c.logprobs, dtype=torch.float32)
    rewards = torch.tensor([score for _, score, _ in rows], dtype=torch.float32)
    if algo.overlong_buffer_frac > 0 and max_tokens:
        lengths = torch.tensor([len(c.completion_ids) for c, _, _ in rows])
        rewards = rewards + overlong_penalty(lengths, max_tokens, algo.overlong_buffer_frac, algo.overlong_penalty)
    group_ids = torch.tensor([gid for _, _, gid in rows], dtype=torch.long)
    advantages = get_algorithm(algo.name).advantage(AdvantageInputs(rewards, group_ids, loss_mask), algo)
    return TrainBatch(input_ids=input_ids, attention_mask=attention, loss_mask=loss_mask,
                      advantages=advantages.float(), rollout_logprobs=rollout_logprobs, rewards=rewards,
                      group_ids=group_ids,
                      policy_version=torch.tensor([c.policy_version for c, _, _ in rows], dtype=torch.long))
