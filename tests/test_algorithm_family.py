"""The GRPO family on hand-computed tensors: the properties each paper states."""

import torch

from rlreason.algorithms import ALGORITHMS, AdvantageInputs, LossInputs, get_algorithm


def _cfg(name, **kw):
    return get_algorithm(name).config(name=name, **kw)


def _inputs(logp, adv, mask, old=None):
    zeros = torch.zeros_like(mask)  # critic values for algorithms that have one
    return LossInputs(logprobs=logp, old_logprobs=logp.detach() if old is None else old, advantages=adv,
                      loss_mask=mask, num_tokens=float(mask.sum()), num_sequences=float(mask.shape[0]),
                      max_tokens=mask.shape[1], values=zeros, old_values=zeros, returns=zeros)


def _loss_and_grad(name, logp, adv, mask, old=None, **kw):
    logp = logp.clone().requires_grad_()
    loss, _ = get_algorithm(name).loss(_inputs(logp, adv, mask, old), _cfg(name, **kw))
    loss.backward()
    return loss.detach(), logp.grad


def test_aggregation_modes_weigh_long_and_short_answers_as_their_papers_say():
    mask = torch.tensor([[1.0, 0, 0], [1.0, 1, 1]])
    adv = torch.tensor([[1.0, 0, 0], [-1.0, -1, -1]])
    logp = torch.full((2, 3), -1.0)
    token_mean, _ = _loss_and_grad("grpo", logp, adv, mask, loss_aggregation="token_mean")
    seq_mean, _ = _loss_and_grad("grpo", logp, adv, mask, loss_aggregation="seq_mean_token_mean")
    assert torch.isclose(token_mean, torch.tensor(0.5))  # every token counts: the long answer dominates
    assert torch.isclose(seq_mean, torch.tensor(0.0))  # every answer counts once
    dr, grad = _loss_and_grad("dr_grpo", logp, adv, mask)  # token sums over the constant max length 3
    assert torch.isclose(dr, torch.tensor(-(1 - 3) / 3 / 2))
    assert torch.allclose(grad[1], torch.full((3,), 1 / 6)) and torch.isclose(grad[0, 0], torch.tensor(-1 / 6))


def test_dr_grpo_is_grpo_without_the_normalisations():
    rewards, groups = torch.tensor([1.0, 0, 0, 1]), torch.tensor([0, 0, 0, 0])
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]])
    inputs = AdvantageInputs(rewards, groups, mask)
    dr_adv = get_algorithm("dr_grpo").advantage(inputs, _cfg("dr_grpo"))
    assert torch.allclose(dr_adv, get_algorithm("grpo").advantage(inputs, _cfg("grpo", scale_rewards="none")))
    logp = torch.log(torch.rand(4, 3) * 0.5 + 0.25)
    a, ga = _loss_and_grad("dr_grpo", logp, dr_adv, mask)
    b, gb = _loss_and_grad("grpo", logp, dr_adv, mask, loss_aggregation="seq_mean_token_sum_norm")
    assert torch.isclose(a, b) and torch.allclose(ga, gb)


def test_rloo_leave_one_out_baseline_by_hand():
    adv = get_algorithm("rloo").advantage(
        AdvantageInputs(torch.tensor([1.0, 0, 0, 2, 2]), torch.tensor([0, 0, 0, 1, 1]), torch.ones(5, 1)),
        _cfg("rloo"))
    assert torch.allclose(adv[:, 0], torch.tensor([1.0, -0.5, -0.5, 0.0, 0.0]))


def test_gspo_with_one_token_completions_equals_token_level_grpo():
    mask = torch.tensor([[1.0, 0], [1.0, 0], [1.0, 0]])
    adv = torch.tensor([[1.0, 0], [-0.5, 0], [2.0, 0]])
    old = torch.log(torch.tensor([[0.5, 1], [0.4, 1], [0.2, 1]]))
    logp = torch.log(torch.tensor([[0.6, 1], [0.5, 1], [0.21, 1]]))
    eps = dict(clip_eps_low=0.2, clip_eps_high=0.2)
    a, ga = _loss_and_grad("gspo", logp, adv, mask, old, **eps)
    b, gb = _loss_and_grad("grpo", logp, adv, mask, old, **eps)
    assert torch.isclose(a, b) and torch.allclose(ga, gb)


def test_gspo_clips_the_sequence_ratio():
    mask = torch.ones(1, 2)
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    logp = torch.log(torch.tensor([[0.6, 0.6]]))  # sequence ratio 1.2, far outside [1 - 3e-4, 1 + 4e-4]
    loss, grad = _loss_and_grad("gspo", logp, torch.ones(1, 2), mask, old)
    assert torch.isclose(loss, torch.tensor(-(1 + 4e-4))) and torch.count_nonzero(grad) == 0


def test_cispo_keeps_every_tokens_gradient_with_a_capped_weight():
    mask = torch.ones(1, 2)
    old = torch.log(torch.tensor([[0.1, 0.5]]))
    logp = torch.log(torch.tensor([[0.9, 0.5]]))  # ratio 9 is capped at 1 + 4 = 5; ratio 1 is not
    _, grad = _loss_and_grad("cispo", logp, torch.ones(1, 2), mask, old)
    assert torch.allclose(grad, torch.tensor([[-5 / 2, -1 / 2]]))
    _, grad = _loss_and_grad("grpo", logp, torch.ones(1, 2), mask, old)
    assert grad[0, 0] == 0  # where GRPO's clip drops the token


def test_gmpo_at_ratio_one_is_minus_the_mean_sequence_advantage():
    mask = torch.tensor([[1.0, 1], [1.0, 0]])
    adv = torch.tensor([[1.0, 1], [-2.0, 0]])
    loss, _ = _loss_and_grad("gmpo", torch.full((2, 2), -0.7), adv, mask)
    assert torch.isclose(loss, torch.tensor(0.5))
    # a log-ratio beyond 0.4 on the optimistic side stops contributing gradient
    old = torch.zeros(1, 1)
    _, grad = _loss_and_grad("gmpo", torch.full((1, 1), 0.6), torch.ones(1, 1), torch.ones(1, 1), old)
    assert torch.count_nonzero(grad) == 0


def test_zero_advantages_give_zero_policy_gradient_for_every_algorithm():
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 1]])
    names = [n for n in ALGORITHMS.names() if ALGORITHMS.get(n).driver == "gradient"]  # (es has no loss)
    assert {"ppo", "reinforce_pp", "remax", "sapo", "opo"} <= set(names)
    for name in names:
        _, grad = _loss_and_grad(name, torch.log(torch.rand(2, 3) * 0.5 + 0.2), torch.zeros(2, 3), mask)
        assert torch.count_nonzero(grad) == 0, name


def test_overlong_penalty_by_hand():
    from rlreason.algorithms.common import overlong_penalty

    pen = overlong_penalty(torch.tensor([10, 40, 45, 50]), max_tokens=50, buffer_frac=0.2, penalty=1.0)
    assert torch.allclose(pen, torch.tensor([0.0, 0.0, -0.5, -1.0]))
    assert torch.count_nonzero(overlong_penalty(torch.tensor([50]), 50, 0.0, 1.0)) == 0


def test_dapo_is_a_set_of_switches_on_shared_code():
    cfg = _cfg("dapo")
    assert (cfg.clip_eps_low, cfg.clip_eps_high, cfg.loss_aggregation) == (0.2, 0.28, "token_mean")
    assert cfg.filter_zero_variance and cfg.overlong_buffer_frac > 0 and not cfg.needs_reference
    assert get_algorithm("dapo").loss is get_algorithm("grpo").loss


def test_truncated_importance_sampling_weights_by_hand():
    mask = torch.ones(1, 2)
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    rollout = torch.log(torch.tensor([[0.1, 0.5]]))  # token weights 5 and 0.5; sequence weight 2.5

    def run(**kw):
        inputs = LossInputs(logprobs=logp, old_logprobs=logp, advantages=torch.ones(1, 2), loss_mask=mask,
                            num_tokens=2.0, num_sequences=1.0, max_tokens=2, rollout_logprobs=rollout)
        return get_algorithm("grpo").loss(inputs, _cfg("grpo", loss_aggregation="token_mean", **kw))

    loss, metrics = run()  # off: plain loss, metrics still reported
    assert torch.isclose(loss, torch.tensor(-1.0)) and metrics["tis_over_cap_frac"] == 0.5
    assert abs(metrics["tis_weight_mean"] - 2.75) < 1e-5
    loss, _ = run(tis_mode="token", tis_cap=2.0)
    assert torch.isclose(loss, torch.tensor(-(2.0 + 0.5) / 2))
    loss, _ = run(tis_mode="token", tis_cap=2.0, tis_action="mask")
    assert torch.isclose(loss, torch.tensor(-(0.0 + 0.5) / 2))
    loss, _ = run(tis_mode="sequence", tis_cap=3.0)
    assert torch.isclose(loss, torch.tensor(-2.5))


def test_sequence_losses_keep_their_weights_on_the_batch_device():
    # With TIS off, GSPO/GMPO weigh sequences by ones; they must be created like the batch, not on the CPU.
    from rlreason.algorithms.sequence_ratios import _seq_weights

    mask = torch.ones(2, 3, dtype=torch.float64)
    weights, _ = _seq_weights(_inputs(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3), mask),
                              _cfg("gspo"))
    assert weights.dtype == mask.dtype and weights.device == mask.device and weights.tolist() == [1.0, 1.0]


# Groups whose rewards are all equal carry no signal: with non-binary rewards (composite, shaped) float32
# rounding of r - mean, divided by std + eps, used to push such a whole group one way (0.056 for 7 x 0.7).
EQUAL_REWARDS = [0.7, 1.05, 0.1, -0.3, 0.7 + 0.1 + 0.2]
GROUP_BASELINES = ["grpo", "dr_grpo", "dapo", "rloo", "gspo", "gmpo", "cispo", "sapo", "opo",
                   "reinforce_pp_baseline"]


def _equal_groups_batch(group_size: int = 7):
    rewards = [r for value in EQUAL_REWARDS for r in [value] * group_size]
    rewards += [1.0, 0.0, 0.5, 0.7, 0.2, 0.9, 0.3]  # one group with signal, so the batch std is not 0
    groups = torch.arange(len(rewards)) // group_size
    mask = torch.ones(len(rewards), 3)
    mask[::2, 2] = 0.0  # unequal lengths (OPO weighs by length)
    return torch.tensor(rewards), groups, mask


def test_every_group_baseline_algorithm_gives_exactly_zero_to_groups_of_equal_rewards():
    assert set(GROUP_BASELINES) <= set(ALGORITHMS.names())
    rewards, groups, mask = _equal_groups_batch()
    equal_rows = slice(0, len(EQUAL_REWARDS) * 7)
    for name in GROUP_BASELINES:
        for scale in (("group", "batch", "none") if "scale_rewards" in get_algorithm(name).config.model_fields
                      else (None,)):
            cfg = _cfg(name) if scale is None else _cfg(name, scale_rewards=scale)
            adv = get_algorithm(name).advantage(AdvantageInputs(rewards, groups, mask), cfg)
            assert torch.count_nonzero(adv[equal_rows]) == 0, (name, scale, adv[equal_rows].abs().max())
            assert torch.count_nonzero(adv[equal_rows.stop:]) > 0, (name, scale)  # the signal group still learns


def test_a_batch_of_equal_rewards_gives_no_advantage_to_global_baselines():
    rewards = torch.full((14,), 0.7)
    groups, mask = torch.arange(14) // 7, torch.ones(14, 3)
    from rlreason.algorithms.common import token_level_rewards

    token_rewards = token_level_rewards(rewards, mask)
    adv = get_algorithm("reinforce_pp").advantage(AdvantageInputs(rewards, groups, mask, token_rewards=token_rewards),
                                                  _cfg("reinforce_pp"))
    assert adv.abs().max() < 1e-9
    remax = get_algorithm("remax").advantage(AdvantageInputs(rewards, groups, mask, baseline_rewards=rewards),
                                             _cfg("remax"))
    assert torch.count_nonzero(remax) == 0
