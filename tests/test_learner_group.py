"""A data-parallel learner group (``train.learners: 2``, two Ray actors joined by gloo) must make the update one
learner makes on the same batches: the same losses and metrics, the same weights on both ranks."""

import pytest
import torch
from transformers import AutoTokenizer

from rlreason.batching import build_train_batch
from rlreason.recipe import load_config
from rlreason.learner.learner import Learner
from tests.batches import assert_same_step, good_and_bad_groups

CASES = {  # overrides, prompts per batch (2 rows each)
    "grpo": ([], (5, 7)),
    "dapo": (["algorithm.name=dapo"], (5, 7)),
    # a critic, frozen old logprobs, two optimizer steps per batch over a shuffled order, micro-batches of 2 rows
    "ppo": (["algorithm.name=ppo", "train.minibatches=2", "train.epochs=2", "train.micro_batch_size=2"], (5, 7)),
    "grpo-lora": (["model.lora.rank=8", "model.lora.dropout=0.0", "train.lr=0.003"], (5, 7)),
    "grpo-kl": (["algorithm.kl_coef=0.05"], (5, 7)),  # reference logprobs, split over the ranks and summed
    # one row per optimizer step: rank 1 has none (it must still take part in every collective)
    "fewer-rows-than-ranks": (["train.minibatches=2"], (1, 1)),
}


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _weights(update) -> dict[str, torch.Tensor]:
    payload = update.payload
    return dict(payload["tensors"]) if update.kind == "lora" else dict(payload)


@pytest.mark.parametrize("case", list(CASES))
def test_two_learners_make_the_update_of_one(ray_local, tiny_model_path, case):
    import ray

    from rlreason.learner.group import LearnerGroup

    overrides, sizes = CASES[case]
    cfg = load_config(None, [*overrides, "train.learners=2"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    batches = [build_train_batch(good_and_bad_groups(tokenizer, n=n), cfg.algorithm) for n in sizes]

    alone = Learner(cfg)  # (its world is 1: it ignores train.learners)
    group = LearnerGroup([ray.remote(Learner).options(num_cpus=1).remote(cfg, threads=1, rank=r, world=2)
                          for r in range(2)])
    group.connect()
    for batch in batches:
        one = alone.train_step(batch).metrics
        two = ray.get(group.train_step.remote(batch)).metrics
        for key in ("loss", "grad_norm", "entropy", "advantage_abs_mean", "is_ess", "kl_to_ref"):
            if key in one:
                assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    expected = _weights(alone.export_weights())
    for actor in group.actors:
        got = _weights(ray.get(actor.export_weights.remote()))
        assert got.keys() == expected.keys()
        for name, tensor in expected.items():  # (a wrong update is ~lr apart: AdamW's first steps are ~lr*sign)
            assert_same_step(got[name], tensor, name)
    moved = _weights(Learner(cfg).export_weights())
    assert any(not torch.equal(moved[k], expected[k]) for k in expected)  # the steps did change the weights
    for actor in group.actors:
        ray.kill(actor)


def test_a_new_phase_adapter_starts_the_same_on_every_rank(ray_local, tiny_model_path):
    """One adapter per continual phase, with LoRA dropout: the ranks' RNGs drift apart (each drops out its own
    rows), so a new phase's adapter must come from rank 0 on every rank."""
    import ray

    from rlreason.learner.group import LearnerGroup

    cfg = load_config(None, ["model.lora.rank=4", "model.lora.dropout=0.2", "continual.adapters=per_phase",
                             "continual.phases=[{task: addition, steps: 1}, {task: subtraction, steps: 1}]",
                             "train.learners=2"])
    batch = build_train_batch(good_and_bad_groups(AutoTokenizer.from_pretrained(tiny_model_path), n=5),
                              cfg.algorithm)
    group = LearnerGroup([ray.remote(Learner).options(num_cpus=1).remote(cfg, threads=1, rank=r, world=2)
                          for r in range(2)])
    group.connect()
    ray.get(group.train_step.remote(batch))
    ray.get(group.new_phase.remote())
    ray.get(group.train_step.remote(batch))
    first, second = (_weights(ray.get(a.export_weights.remote())) for a in group.actors)
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor, rtol=0, atol=1e-6, msg=name)
    for actor in group.actors:
        ray.kill(actor)


def test_a_rank_that_fails_while_the_others_wait_in_a_collective_ends_the_call_in_seconds(ray_local, tiny_model_path):
    """Rank 1's rows hold token ids outside the vocabulary: it raises in its forward pass while rank 0 waits for it
    in the all-reduce (gloo would wait its whole 10-minute timeout). The group stops every rank and the driver
    learns which one failed, in seconds."""
    import time

    import ray

    from rlreason.learner.group import LearnerGroup
    from rlreason.learner.learner import by_length

    cfg = load_config(None, ["train.learners=2"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    batch = build_train_batch(good_and_bad_groups(tokenizer, n=5), cfg.algorithm)
    for row in by_length(batch, torch.arange(batch.size))[1::2]:  # rank 1's share of the rows
        batch.input_ids[row, 0] = 10_000
    group = LearnerGroup([ray.remote(Learner).options(num_cpus=1).remote(cfg, threads=1, rank=r, world=2)
                          for r in range(2)])
    group.connect()
    start = time.monotonic()
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(group.train_step.remote(batch), timeout=120)
    assert time.monotonic() - start < 30
    assert group.failure.startswith("learner rank 1 failed in train_step (") and "other ranks were stopped" in \
        group.failure
