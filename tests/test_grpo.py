"""GRPO on small hand-computed tensors: values, gradients and the properties that must hold."""

import torch

from rlreason.algorithms import AdvantageInputs, LossInputs, get_algorithm
from rlreason.algorithms.common import aggregate, kl_penalty

GRPO = get_algorithm("grpo")


def _cfg(**kw):
    return GRPO.config(name="grpo", **kw)


def test_group_normalized_advantage_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    mask = torch.ones(6, 2)
    adv = GRPO.advantage(AdvantageInputs(rewards, groups, mask), _cfg())
    std = torch.tensor([1.0, 0.0, 0.0]).std()  # unbiased, 0.5774
    expected = torch.tensor([2 / 3, -1 / 3, -1 / 3]) / (std + 1e-6)
    assert torch.allclose(adv[:3, 0], expected, atol=1e-5)
    assert torch.allclose(adv[3:], torch.zeros(3, 2))  # a solved group teaches nothing
    unscaled = GRPO.advantage(AdvantageInputs(rewards, groups, mask), _cfg(scale_rewards="none"))
    assert torch.allclose(unscaled[:3, 1], torch.tensor([2 / 3, -1 / 3, -1 / 3]))


def _inputs(logp, adv, mask, **kw):
    return LossInputs(logprobs=logp, old_logprobs=logp.detach(), advantages=adv, loss_mask=mask,
                      num_tokens=float(mask.sum()), num_sequences=float(mask.shape[0]), max_tokens=4, **kw)


def test_ratio_one_loss_is_minus_aggregated_advantage():
    logp = torch.log(torch.tensor([[0.5, 0.2, 0.9], [0.3, 0.3, 0.3]])).requires_grad_()
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([[2.0, 2.0, 0.0], [-1.0, -1.0, -1.0]])
    for mode in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"):
        loss, _ = GRPO.loss(_inputs(logp, adv, mask), _cfg(loss_aggregation=mode))
        assert torch.isclose(loss, -aggregate(adv, mask, mode, 5.0, 2.0, 4)), mode
    # by hand: token_mean = -(2+2-1-1-1)/5, seq_mean_token_mean = -(2 + -1)/2
    tm, _ = GRPO.loss(_inputs(logp, adv, mask), _cfg(loss_aggregation="token_mean"))
    assert torch.isclose(tm, torch.tensor(-0.2))
    sm, _ = GRPO.loss(_inputs(logp, adv, mask), _cfg(loss_aggregation="seq_mean_token_mean"))
    assert torch.isclose(sm, torch.tensor(-0.5))


def test_gradient_by_hand_and_zero_advantage_gives_zero_gradient():
    logp = torch.log(torch.tensor([[0.5, 0.25]])).requires_grad_()
    mask = torch.ones(1, 2)
    loss, _ = GRPO.loss(_inputs(logp, torch.tensor([[1.0, 1.0]]), mask), _cfg())
    loss.backward()
    # d/dlogp of -mean(exp(logp - old) * A) at ratio 1 is -A / n_tokens
    assert torch.allclose(logp.grad, torch.tensor([[-0.5, -0.5]]))
    logp.grad = None
    loss, _ = GRPO.loss(_inputs(logp, torch.zeros(1, 2), mask), _cfg())
    loss.backward()
    assert torch.count_nonzero(logp.grad) == 0


def test_clipping_stops_the_gradient_outside_the_trust_region():
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    logp = torch.log(torch.tensor([[0.7, 0.3]])).requires_grad_()  # ratios 1.4 and 0.6
    inputs = LossInputs(logprobs=logp, old_logprobs=old, advantages=torch.tensor([[1.0, -1.0]]),
                        loss_mask=torch.ones(1, 2), num_tokens=2.0, num_sequences=1.0, max_tokens=2)
    loss, metrics = GRPO.loss(inputs, _cfg(clip_eps_low=0.2, clip_eps_high=0.2))
    loss.backward()
    assert metrics["clip_frac"] == 1.0
    assert torch.count_nonzero(logp.grad) == 0
    assert torch.isclose(loss, torch.tensor(-(1.2 * 1.0 + 0.8 * -1.0) / 2))


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([0.0]), torch.log(torch.tensor([0.5]))
    lr = float(logp - ref)  # log 2
    assert torch.isclose(kl_penalty(logp, ref, "k1"), torch.tensor(lr))
    assert torch.isclose(kl_penalty(logp, ref, "k2"), torch.tensor(0.5 * lr * lr))
    assert torch.isclose(kl_penalty(logp, ref, "k3"), torch.tensor(0.5 - 1 + lr))


def test_kl_term_enters_the_loss_when_a_reference_is_given():
    logp = torch.log(torch.tensor([[0.5, 0.5]])).requires_grad_()
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    mask = torch.ones(1, 2)
    loss, metrics = GRPO.loss(_inputs(logp, torch.zeros(1, 2), mask, ref_logprobs=ref), _cfg(kl_coef=0.1))
    k3 = 0.5 - 1 + torch.log(torch.tensor(2.0))
    assert torch.isclose(loss, 0.1 * k3) and abs(metrics["kl"] - float(k3)) < 1e-6


def test_batch_scope_divides_by_the_batch_std():
    rewards = torch.tensor([1.0, 0.0, 3.0, 1.0])
    groups = torch.tensor([0, 0, 1, 1])
    adv = GRPO.advantage(AdvantageInputs(rewards, groups, torch.ones(4, 1)), _cfg(scale_rewards="batch"))
    centred = torch.tensor([0.5, -0.5, 1.0, -1.0])
    assert torch.allclose(adv[:, 0], centred / (centred.std() + 1e-6))


def test_dual_clip_bounds_the_loss_of_large_ratios_on_negative_advantages():
    old = torch.log(torch.tensor([[0.05, 0.05]]))
    logp = torch.log(torch.tensor([[0.5, 0.5]])).requires_grad_()  # ratio 10
    inputs = LossInputs(logprobs=logp, old_logprobs=old, advantages=torch.tensor([[-1.0, 1.0]]),
                        loss_mask=torch.ones(1, 2), num_tokens=2.0, num_sequences=1.0, max_tokens=2)
    plain, _ = GRPO.loss(inputs, _cfg(loss_aggregation="token_mean"))
    assert torch.isclose(plain, torch.tensor((10.0 - 1.2) / 2))
    loss, _ = GRPO.loss(inputs, _cfg(loss_aggregation="token_mean", dual_clip=3.0))
    assert torch.isclose(loss, torch.tensor((3.0 - 1.2) / 2))
    loss.backward()
    assert torch.count_nonzero(logp.grad) == 0
