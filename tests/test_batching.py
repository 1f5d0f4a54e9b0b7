from dataclasses import replace

import pytest
import torch

from rlreason.batching import build_train_batch, compute_advantages, step_counts
from rlreason.recipe import load_config
from rlreason.types import Completion, Problem, ScoredGroup, TrainBatch, VerifyResult


def _group(pid, prompt, completions, scores):
    p = Problem(id=pid, prompt="", reference="", verifier="exact_answer")
    comps = [Completion(pid, prompt, c, [-0.5] * len(c), "stop", 3, "") for c in completions]
    return ScoredGroup(p, comps, [VerifyResult(s) for s in scores])


def test_build_train_batch_pads_and_masks_completions_only():
    groups = [_group("a", [5, 6], [[7], [8, 9, 1]], [1.0, 0.0]), _group("b", [5], [[4, 4], [3]], [0.0, 0.0])]
    batch = build_train_batch(groups, load_config().algorithm, pad_id=0)
    assert batch.input_ids.shape == (4, 5)
    assert batch.input_ids[1].tolist() == [5, 6, 8, 9, 1]
    assert batch.loss_mask[1].tolist() == [0, 0, 1, 1, 1]
    assert batch.loss_mask[0].tolist() == [0, 0, 1, 0, 0]
    assert batch.attention_mask[3].tolist() == [1, 1, 0, 0, 0]
    assert batch.group_ids.tolist() == [0, 0, 1, 1]
    assert batch.rollout_logprobs[1, 2:].tolist() == [-0.5] * 3
    assert batch.policy_version.tolist() == [3] * 4
    adv = compute_advantages(batch, load_config().algorithm)
    assert (adv[0, 2] > 0) and (adv[1, 2:] < 0).all()
    assert (adv[2:] == 0).all() and (adv * (1 - batch.loss_mask) == 0).all()
    assert batch.baseline_rewards is None


def test_greedy_baselines_ride_along_per_row():
    groups = [_group("a", [5], [[7], [8]], [1.0, 0.0]), _group("b", [5], [[4], [3]], [0.0, 1.0])]
    groups = [replace(g, baseline=VerifyResult(s)) for g, s in zip(groups, [1.0, 0.0])]
    batch = build_train_batch(groups, load_config().algorithm)
    assert batch.baseline_rewards.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_step_counts_give_each_row_its_prompts_token_count_within_the_step():
    groups = [_group("a", [5], [[7], [8, 9, 1]], [1.0, 0.0]), _group("b", [5], [[4, 4], [3]], [0.0, 1.0])]
    batch = build_train_batch(groups, load_config().algorithm)
    counts = step_counts(batch, torch.tensor([0, 1, 3]))  # a minibatch that holds only part of prompt b
    assert counts["num_tokens"] == 5 and counts["num_sequences"] == 3 and counts["num_groups"] == 2
    assert counts["group_tokens"].tolist() == [4, 4, 0, 1]


def test_train_batch_checks_shapes():
    b = dict(input_ids=torch.zeros(2, 3), attention_mask=torch.zeros(2, 3), loss_mask=torch.zeros(2, 3),
             rollout_logprobs=torch.zeros(2, 4), rewards=torch.zeros(2),
             group_ids=torch.zeros(2), policy_version=torch.zeros(2))
    with pytest.raises(AssertionError, match="rollout_logprobs"):
        TrainBatch(**b)
