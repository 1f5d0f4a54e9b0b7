"""The learner reads capability flags, never names: critics, KL in the reward, greedy baselines, precision."""

import pytest
import torch
from batches import good_and_bad_groups

from rlreason.batching import build_train_batch
from rlreason.recipe import load_config
from rlreason.learner.learner import Learner


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def _good_minus_bad(learner, batch) -> float:
    """Mean log-prob of the correct completions minus the wrong ones (rows alternate good, bad)."""
    with torch.no_grad():
        out, _ = learner._forward(batch.input_ids, batch.attention_mask, with_entropy=False)
    seq = (out.logprobs * batch.loss_mask).sum(1) / batch.loss_mask.sum(1)
    return float(seq[0::2].mean() - seq[1::2].mean())


@pytest.mark.parametrize("overrides", [
    ["algorithm.name=ppo"], ["algorithm.name=ppo", "algorithm.critic=head"], ["algorithm.name=reinforce_pp"],
    ["algorithm.name=reinforce_pp_baseline"], ["algorithm.name=remax"], ["algorithm.name=opo"],
    ["algorithm.name=sapo"],
    ["algorithm.name=cispo", "algorithm.loss_aggregation=prompt_mean_token_mean", "model.dtype=bfloat16"],
    # bfloat16 critic values and logprobs land in float32 buffers (once crashed: "Index put requires the source
    # and destination dtypes match")
    ["algorithm.name=ppo", "algorithm.critic=head", "model.dtype=bfloat16", "train.fp32_logits=false"],
], ids=lambda o: "+".join(x.split("=")[1] for x in o))
def test_each_algorithm_moves_probability_towards_the_correct_answers(overrides, tokenizer):
    cfg = load_config(None, [*overrides, "train.lr=1e-4", "train.epochs=2", "train.minibatches=2"])
    learner = Learner(cfg)
    batch = build_train_batch(good_and_bad_groups(tokenizer, baseline=0.5), cfg.algorithm)
    before = _good_minus_bad(learner, batch)
    for _ in range(3):
        stats = learner.train_step(batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.metrics.values()), stats.metrics
    assert _good_minus_bad(learner, batch) > before + 0.01


def test_ppo_critic_learns_the_returns(tokenizer):
    cfg = load_config(None, ["algorithm.name=ppo", "algorithm.kl_coef=0", "train.lr=1e-3"])
    learner = Learner(cfg)
    assert learner.critic is not None and learner.critic.trunk is not None
    batch = build_train_batch(good_and_bad_groups(tokenizer), cfg.algorithm)
    losses = [learner.train_step(batch).metrics["value_loss"] for _ in range(8)]
    assert losses[-1] < 0.5 * losses[0], losses
    exported = dict(learner.export_weights().payload)
    assert not any("head.weight" == k or k.startswith("trunk.") for k in exported)  # the critic stays home


def test_kl_in_the_reward_is_measured_against_the_reference(tokenizer):
    cfg = load_config(None, ["algorithm.name=reinforce_pp", "train.lr=1e-3"])
    learner = Learner(cfg)
    with learner.policy.reference() as reference:
        assert reference is not None and reference is not learner.model  # a frozen copy for full weights
    batch = build_train_batch(good_and_bad_groups(tokenizer), cfg.algorithm)
    assert learner.prepare(batch, need_old=False).metrics["kl_in_reward"] == 0.0  # policy == reference
    learner.train_step(batch)
    assert learner.prepare(batch, need_old=False).metrics["kl_in_reward"] != 0.0


def test_fp32_logits_switch_changes_the_head_precision_under_bfloat16(tokenizer):
    batch = build_train_batch(good_and_bad_groups(tokenizer), load_config().algorithm)
    full = Learner(load_config(None, []))._forward(batch.input_ids, batch.attention_mask)[0].logprobs
    outs = {}
    for fp32 in (True, False):
        learner = Learner(load_config(None, ["model.dtype=bfloat16", f"train.fp32_logits={fp32}"]))
        outs[fp32] = learner._forward(batch.input_ids, batch.attention_mask)[0].logprobs
    m = batch.loss_mask > 0
    err = {k: float((v - full)[m].abs().mean()) for k, v in outs.items()}
    assert 0 < err[True] < 0.1 and 0 < err[False] < 0.1 and err[True] != err[False], err
