import pytest
import torch

from rlreason.batching import build_train_batch
from rlreason.config import load_config
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
    assert (batch.advantages[0, 2] > 0) and (batch.advantages[1, 2:] < 0).all()
    assert (batch.advantages[2:] == 0).all() and (batch.advantages * (1 - batch.loss_mask) == 0).all()


def test_train_batch_checks_shapes():
    b = dict(input_ids=torch.zeros(2, 3), attention_mask=torch.zeros(2, 3), loss_mask=torch.zeros(2, 3),
             advantages=torch.zeros(2, 4), rollout_logprobs=torch.zeros(2, 3), rewards=torch.zeros(2),
             group_ids=torch.zeros(2), policy_version=torch.zeros(2))
    with pytest.raises(AssertionError, match="advantages"):
        TrainBatch(**b)
