"""Micro-batches are formed shortest rows first and trimmed to their own longest row: the step must be the one a
single untrimmed pass takes (same loss, same new weights), with and without a critic and frozen logprobs."""

import pytest
from transformers import AutoTokenizer

from rlreason.batching import build_train_batch
from rlreason.recipe import load_config
from rlreason.learner.learner import Learner
from tests.batches import assert_same_step, good_and_bad_groups


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_trimmed_micro_batches_take_the_same_step_as_one_pass(tiny_model_path, algorithm):
    groups = good_and_bad_groups(AutoTokenizer.from_pretrained(tiny_model_path), n=6)
    learners = {}
    for micro in (64, 1, 3):
        cfg = load_config(None, [f"algorithm.name={algorithm}", f"train.micro_batch_size={micro}"])
        batch = build_train_batch(groups, cfg.algorithm)
        assert len(set(batch.attention_mask.sum(1).tolist())) > 1  # rows of different lengths: some trimming
        learner = Learner(cfg)
        stats = learner.train_step(batch)
        learners[micro] = (stats.metrics["loss"], [p.detach().clone() for p in learner.params])
    loss, params = learners[64]
    for micro in (1, 3):
        assert learners[micro][0] == pytest.approx(loss, rel=1e-4, abs=1e-6)
        for a, b in zip(params, learners[micro][1]):  # (AdamW's first step is ~lr * sign(grad): 1e-4 apart if wrong)
            assert_same_step(b, a)
