"""PPO, REINFORCE++, ReMax, OPO and SAPO on hand-computed tensors, and the shared pieces they stand on."""

import pytest
import torch

from rlreason.algorithms import AdvantageInputs, LossInputs, get_algorithm
from rlreason.algorithms.common import aggregate, gae, returns_to_go, token_level_rewards, whiten
from rlreason.batching import advantage_inputs
from rlreason.recipe import RecipeError, load_config
from rlreason.types import TrainBatch


def _cfg(name, **kw):
    return get_algorithm(name).config(name=name, **kw)


def test_token_level_rewards_put_the_score_on_the_last_completion_token_and_charge_kl_everywhere():
    mask = torch.tensor([[0.0, 1, 1, 0], [0, 1, 1, 1]])
    kl = torch.full((2, 4), 0.5)
    r = token_level_rewards(torch.tensor([1.0, 2.0]), mask, kl, kl_coef=0.2)
    assert torch.allclose(r, torch.tensor([[0.0, -0.1, 0.9, 0], [0, -0.1, -0.1, 1.9]]))


def test_returns_to_go_sum_the_future_rewards_of_each_completion():
    mask = torch.tensor([[0.0, 1, 1, 1, 0]])
    rewards = torch.tensor([[0.0, -0.1, -0.1, 0.9, 0]])
    assert torch.allclose(returns_to_go(rewards, mask), torch.tensor([[0.0, 0.7, 0.8, 0.9, 0]]))
    assert torch.allclose(returns_to_go(rewards, mask, gamma=0.5), torch.tensor([[0.0, 0.075, 0.35, 0.9, 0]]))


def test_gae_by_hand():
    mask = torch.tensor([[0.0, 1, 1, 1, 0]])  # a prompt token, three completion tokens, padding
    rewards = torch.tensor([[0.0, 0, 0, 1, 0]])
    values = torch.tensor([[9.0, 0.5, 0.5, 0.5, 9]])  # off-mask values must not leak in
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)  # lambda 1: Monte Carlo return minus V
    assert torch.allclose(adv, torch.tensor([[0.0, 0.5, 0.5, 0.5, 0]]))
    assert torch.allclose(ret, torch.tensor([[0.0, 1, 1, 1, 0]]))
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=0.0)  # lambda 0: one-step TD errors
    assert torch.allclose(adv, torch.tensor([[0.0, 0, 0, 0.5, 0]]))
    adv, _ = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # delta = [0.9*0.5-0.5, 0.9*0.5-0.5, 1-0.5] = [-0.05, -0.05, 0.5]; A_t = delta_t + 0.45 A_{t+1}
    a3 = 0.5
    a2 = -0.05 + 0.45 * a3
    a1 = -0.05 + 0.45 * a2
    assert torch.allclose(adv, torch.tensor([[0.0, a1, a2, a3, 0]]))


def test_whiten_normalises_over_masked_entries_only():
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 0]])
    out = whiten(torch.tensor([[1.0, 2, 100], [3, 4, -100]]), mask)
    assert abs(float(out[mask > 0].mean())) < 1e-6 and abs(float(out[mask > 0].std(unbiased=False)) - 1) < 1e-4
    assert (out[:, 2] == 0).all()


def test_prompt_level_aggregation_weighs_every_prompt_once_and_every_token_within_it():
    # prompt A: rows 0-1 with 1 and 3 tokens; prompt B: row 2 with 2 tokens
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 1], [1, 1, 0]])
    per_token = torch.tensor([[4.0, 0, 0], [0, 0, 0], [1, 1, 0]])
    out = aggregate(per_token, mask, "prompt_mean_token_mean", 6, 3, 3, torch.tensor([4.0, 4, 2]), 2)
    assert torch.isclose(out, torch.tensor((4 / 4 + 2 / 2) / 2))


def test_kl_in_the_reward_reaches_outcome_and_token_level_advantages():
    mask = torch.tensor([[0.0, 1, 1], [0, 1, 1]])
    batch = TrainBatch(input_ids=torch.zeros(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 3),
                       loss_mask=mask, rollout_logprobs=torch.zeros(2, 3), rewards=torch.tensor([1.0, 0.0]),
                       group_ids=torch.tensor([0, 0]), policy_version=torch.zeros(2))
    kl = torch.tensor([[0.0, 1.0, 1.0], [0, 0, 0]])
    algo = _cfg("grpo", kl_coef=0.1, kl_location="reward")
    inputs = advantage_inputs(batch, algo, kl=kl)
    assert torch.allclose(inputs.rewards, torch.tensor([0.8, 0.0]))
    assert torch.allclose(inputs.token_rewards, torch.tensor([[0.0, -0.1, 0.9], [0, 0, 0]]))
    loss_kl = advantage_inputs(batch, _cfg("grpo", kl_coef=0.1), kl=kl)  # KL in the loss: rewards untouched
    assert torch.allclose(loss_kl.rewards, batch.rewards)


def test_kl_in_the_reward_is_not_also_charged_in_the_loss():
    logp = torch.log(torch.tensor([[0.5, 0.5]])).requires_grad_()
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    kw = dict(logprobs=logp, old_logprobs=logp.detach(), advantages=torch.zeros(1, 2), loss_mask=torch.ones(1, 2),
              num_tokens=2.0, num_sequences=1.0, max_tokens=2, ref_logprobs=ref)
    in_loss, m = get_algorithm("grpo").loss(LossInputs(**kw), _cfg("grpo", kl_coef=0.1))
    in_reward, m2 = get_algorithm("grpo").loss(LossInputs(**kw), _cfg("grpo", kl_coef=0.1, kl_location="reward"))
    assert float(in_loss.detach()) > 0 and "kl" in m
    assert float(in_reward.detach()) == 0 and "kl" not in m2


def test_reinforce_pp_normalises_returns_over_the_whole_batch():
    mask = torch.tensor([[1.0, 1], [1, 1]])
    tok = torch.tensor([[0.0, 1.0], [0, 0]])
    inputs = AdvantageInputs(torch.tensor([1.0, 0]), torch.tensor([0, 1]), mask, token_rewards=tok)
    adv = get_algorithm("reinforce_pp").advantage(inputs, _cfg("reinforce_pp"))
    assert torch.allclose(adv, torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), atol=1e-4)  # returns [1,1],[0,0]


def test_reinforce_pp_baseline_centres_per_group_and_scales_by_the_batch_std():
    rewards, groups = torch.tensor([1.0, 0, 1, 1]), torch.tensor([0, 0, 1, 1])
    adv = get_algorithm("reinforce_pp_baseline").advantage(
        AdvantageInputs(rewards, groups, torch.ones(4, 1)), _cfg("reinforce_pp_baseline"))
    centred = torch.tensor([0.5, -0.5, 0, 0])
    assert torch.allclose(adv[:, 0], centred / centred.std(), atol=1e-4)
    assert _cfg("reinforce_pp_baseline").kl_estimator == "k2" and not _cfg("reinforce_pp_baseline").kl_in_reward
    assert _cfg("reinforce_pp").kl_in_reward and _cfg("reinforce_pp").kl_estimator == "k1"


def test_remax_subtracts_the_greedy_reward():
    inputs = AdvantageInputs(torch.tensor([1.0, 0, 1]), torch.tensor([0, 0, 1]), torch.ones(3, 2),
                             baseline_rewards=torch.tensor([1.0, 1.0, 0.0]))
    adv = get_algorithm("remax").advantage(inputs, _cfg("remax"))
    assert adv[:, 0].tolist() == [0.0, -1.0, 1.0] and _cfg("remax").needs_greedy_baseline
    with pytest.raises(ValueError, match="greedy"):
        get_algorithm("remax").advantage(AdvantageInputs(inputs.rewards, inputs.group_ids, inputs.loss_mask),
                                         _cfg("remax"))


def test_opo_baseline_is_the_length_weighted_group_mean():
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 1]])
    adv = get_algorithm("opo").advantage(AdvantageInputs(torch.tensor([1.0, 0]), torch.tensor([0, 0]), mask),
                                         _cfg("opo"))
    assert torch.allclose(adv, torch.tensor([[0.75, 0, 0], [-0.25, -0.25, -0.25]]))


def test_sapo_is_the_policy_gradient_on_policy_and_fades_far_off_policy():
    mask, adv = torch.ones(1, 2), torch.tensor([[1.0, -1.0]])

    def grad(logp, old):
        logp = logp.clone().requires_grad_()
        inputs = LossInputs(logprobs=logp, old_logprobs=old, advantages=adv, loss_mask=mask, num_tokens=2.0,
                            num_sequences=1.0, max_tokens=2)
        get_algorithm("sapo").loss(inputs, _cfg("sapo"))[0].backward()
        return logp.grad

    on = grad(torch.zeros(1, 2), torch.zeros(1, 2))
    assert torch.allclose(on, -adv / 2)  # d/dlogp of -mean(rho * A) at rho = 1
    far = grad(torch.full((1, 2), 2.0), torch.zeros(1, 2))  # rho = e^2
    assert (far.abs() < 0.1 * on.abs()).all() and (far.abs() > 0).all()  # attenuated, never cut to zero


def test_ppo_value_loss_is_clipped_around_the_old_values():
    v = torch.tensor([[1.0]], requires_grad=True)
    zero = torch.zeros(1, 1)
    inputs = LossInputs(logprobs=zero, old_logprobs=zero, advantages=zero, loss_mask=torch.ones(1, 1),
                        num_tokens=1.0, num_sequences=1.0, max_tokens=1, values=v,
                        old_values=torch.tensor([[0.5]]), returns=torch.tensor([[2.0]]))
    cfg = _cfg("ppo", vf_coef=1.0, kl_coef=0.0)
    loss, metrics = get_algorithm("ppo").loss(inputs, cfg)
    # clipped value 0.7: 0.5 * max((1 - 2)^2, (0.7 - 2)^2) = 0.845, and the clipped branch gives no gradient
    assert abs(metrics["value_loss"] - 0.845) < 1e-5 and torch.isclose(loss, torch.tensor(0.845))
    loss.backward()
    assert v.grad.item() == 0.0 and metrics["value_clip_frac"] == 1.0


def test_ppo_advantage_is_whitened_gae_over_critic_values():
    mask = torch.ones(2, 2)
    inputs = AdvantageInputs(torch.tensor([1.0, 0]), torch.tensor([0, 1]), mask,
                             token_rewards=torch.tensor([[0.0, 1], [0, 0]]), values=torch.full((2, 2), 0.5))
    cfg = _cfg("ppo", lam=1.0)
    adv = get_algorithm("ppo").advantage(inputs, cfg)
    assert torch.allclose(adv, whiten(torch.tensor([[0.5, 0.5], [-0.5, -0.5]]), mask))
    assert torch.allclose(get_algorithm("ppo").value_targets(inputs, cfg), torch.tensor([[1.0, 1], [0, 0]]))


def test_ppo_without_a_value_model_fails_before_training():
    with pytest.raises(RecipeError, match=r"^algorithm.critic: ppo needs a value model \(allowed: separate, head\)"):
        load_config(None, ["algorithm.name=ppo", "algorithm.critic=none"])
    assert load_config(None, ["algorithm.name=ppo"]).algorithm.needs_value_model
