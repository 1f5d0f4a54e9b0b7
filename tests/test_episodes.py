"""Multi-turn episodes through the real engine and learner: the trajectory is exactly the tokens sampled and the
environment's tokens (no decode-encode drift), only sampled tokens are trained, the learner's logprobs equal the
engine's across turns, limits and faults end episodes (never the call), and failed episodes never train."""

import dataclasses
import random

import pytest
import torch

from rlreason.rollout.engine import SamplingSpec
from rlreason.rollout.episodes import ChatDelta, EpisodeSpec
from rlreason.tasks import get_task
from rlreason.types import Completion, Episode, Problem, ScoredGroup, Turn, VerifyResult

ECHO = "plugins.test_envs:Echo"


def _played(problems, env=ECHO, chat=False, **config):
    out = []
    for p in problems:
        meta = {**p.meta, "env": {"name": env, "config": config}}
        if chat:
            meta["messages"] = [{"role": "user", "content": p.prompt}]
        out.append(dataclasses.replace(p, meta=meta, verifier="environment"))
    return out


def _runs(completion):
    """The completion as (sampled?, ids) runs."""
    runs = []
    for token, m in zip(completion.completion_ids, completion.mask):
        if runs and runs[-1][0] == bool(m):
            runs[-1][1].append(token)
        else:
            runs.append((bool(m), [token]))
    return runs


def test_an_episode_is_exactly_the_tokens_sampled_and_the_environments_tokens(engine):
    problems = _played(get_task("arithmetic").eval_problems(4), turns=3)
    groups = engine.generate(problems, SamplingSpec(2, 12, episode=EpisodeSpec(max_turns=5)))
    observation = engine.tokenizer.encode(" ok\n", add_special_tokens=False)
    episodes = [c for g in groups for c in g]
    assert len(episodes) == 8 and all(c.episode is not None for c in episodes)
    for c in episodes:
        assert len(c.logprobs) == len(c.completion_ids) == len(c.mask)
        runs = _runs(c)
        turns = c.episode.turns
        assert [(r[0], len(r[1])) for r in runs] == [(t.role == "assistant", t.tokens) for t in turns]
        assert all(ids == observation for sampled, ids in runs if not sampled)  # the environment's, as given
        assert all(lp == 0.0 for lp, m in zip(c.logprobs, c.mask) if not m) and any(c.mask)
        # the context holds exactly what was sampled: the engine, asked again, gives the sampled tokens the same
        # logprobs (text decoded and encoded again would have drifted somewhere)
        again = engine.sequence_logprobs(c.prompt_ids, c.completion_ids)
        pairs = [(a, b) for a, b, m in zip(again, c.logprobs, c.mask) if m]
        assert max(abs(a - b) for a, b in pairs) < 1e-3
    ended = [c.episode for c in episodes if c.episode.reason == "done"]
    assert ended and all(e.reward == 1.0 and sum(t.role == "assistant" for t in e.turns) == 3 for e in ended)


def test_chat_template_turns_are_rendered_for_the_new_message_only(engine):
    problems = _played(get_task("arithmetic").eval_problems(2), chat=True, turns=3, messages=True)
    groups = engine.generate(problems, SamplingSpec(2, 12, episode=EpisodeSpec(max_turns=5)))
    delta = ChatDelta(engine.tokenizer)
    for c in (c for g in groups for c in g):
        for (sampled, ids), (previous, before) in zip(_runs(c)[1:], _runs(c)):
            if not sampled:  # after a model turn that ended at EOS or was cut
                after_eos = before[-1] == engine.tokenizer.eos_token_id
                assert ids == delta.ids([{"role": "user", "content": " ok\n"}], after_eos)


THINKING = ("{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
            "assistant: {{ m['content'].split('</think>')[-1] }}\n{% else %}{{ m['role'] }}: {{ m['content'] }}\n"
            "{% endif %}{% endfor %}{% if add_generation_prompt %}assistant:\n{% endif %}")


def test_a_template_that_rewrites_earlier_turns_cannot_make_the_trajectory_drift(tiny_chat_model):
    """A thinking model's template strips <think> from earlier assistant turns (Qwen3-style): rendering the whole
    conversation again changes the tokens the model sampled; rendering the new message only does not."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_chat_model)
    tok.chat_template = THINKING
    sampled = tok.encode("<think>2+2</think>4", add_special_tokens=False)
    conversation = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>2+2</think>4"}]
    prompt = tok.encode(tok.apply_chat_template(conversation[:1], add_generation_prompt=True, tokenize=False),
                        add_special_tokens=False)
    ours = prompt + sampled + ChatDelta(tok).ids([{"role": "user", "content": "more"}], after_eos=False)
    again = tok.encode(tok.apply_chat_template([*conversation, {"role": "user", "content": "more"}],
                                               add_generation_prompt=True, tokenize=False), add_special_tokens=False)
    assert ours[: len(prompt) + len(sampled)] == prompt + sampled
    assert again[: len(prompt) + len(sampled)] != prompt + sampled  # the re-rendered history lost the thinking
    assert ours[len(prompt) + len(sampled):] == again[len(again) - len(ours) + len(prompt) + len(sampled):]


@pytest.mark.parametrize("spec,config,reason", [
    (EpisodeSpec(max_turns=3), {"turns": 100}, "max_turns"),
    (EpisodeSpec(max_turns=50, max_tokens=30), {"turns": 100}, "max_tokens"),
    (EpisodeSpec(max_turns=50), {"turns": 100, "observation": " this is a long answer\n" * 3}, "context"),
])
def test_limits_end_an_episode_with_their_reason(engine, spec, config, reason):
    problems = _played(get_task("arithmetic").eval_problems(2), **config)
    groups = engine.generate(problems, SamplingSpec(2, 12, episode=spec))
    for c in (c for g in groups for c in g):
        assert c.episode.reason == reason or c.episode.reason == "done" and reason == "context", c.episode
        if spec.max_tokens is not None:
            assert len(c.completion_ids) <= spec.max_tokens
        assert len(c.prompt_ids) + len(c.completion_ids) < engine.max_model_len
        assert sum(t.role == "assistant" for t in c.episode.turns) <= spec.max_turns
    assert any(c.episode.reason == reason for g in groups for c in g)


@pytest.mark.parametrize("where", ["reset", "step"])
def test_an_environment_that_raises_fails_its_episode_not_the_call(engine, where):
    problems = [Problem(f"p{i}", f"{i}+0=?\n", str(i), "environment", meta={
        "env": {"name": "plugins.test_envs:Raises", "config": {"where": where}}}) for i in range(4)]
    groups = engine.generate(problems, SamplingSpec(2, 8, episode=EpisodeSpec()))
    for problem, group in zip(problems, groups):
        odd = int(problem.reference) % 2 == 1
        for c in group:
            assert c.episode.failed == odd
            if odd:
                assert c.episode.error.startswith(f"{where}: ") and "failed on purpose" in c.episode.error
                assert (where == "reset") == (c.completion_ids == [])


def _episode(reason="done", reward=1.0, error=None, pid="p"):
    episode = Episode("e", [Turn("assistant", "x", 1)], reason, reward, reward == 1.0, error)
    return Completion(pid, [1], [2], [-0.5], "stop", 0, "x", mask=[1], episode=episode)


def test_failed_episodes_drop_their_group_or_stop_the_run():
    from rlreason.episode_groups import EnvironmentFailed, settle
    from rlreason.scoring import EpisodeRewards

    problems = [Problem(f"p{i}", "q", "1", "environment") for i in range(4)]
    completions = [[_episode(), _episode(reward=0.0)] for _ in range(3)] + [[_episode(), _episode("failed", None,
                                                                                                 "step: boom")]]
    flat = [c for g in completions for c in g]
    results = iter(EpisodeRewards(None, flat).score([(c.text, p) for p, g in zip(problems, completions) for c in g]))
    groups = [ScoredGroup(p, g, [next(results) for _ in g]) for p, g in zip(problems, completions)]
    assert groups[0].rewards == [1.0, 0.0] and groups[3].results[1].error == "environment: step: boom"
    kept, failed = settle(groups, "drop_group", 0.5)
    assert kept == groups[:3] and failed == 1  # never a zero-reward row that would bias the group's baseline
    again = [ScoredGroup(problems[3], [_episode(), _episode()], [VerifyResult(1.0), VerifyResult(0.0)])]
    kept, _ = settle(groups, "resample", 0.5, lambda todo: again)
    assert kept == groups[:3] + again
    with pytest.raises(EnvironmentFailed, match=r"^1 of 8 episodes failed \(env.max_failed_frac is 0.1\); e.g. "
                                                r"problem p: step: boom"):
        settle(groups, "drop_group", 0.1)


def test_only_sampled_tokens_are_trained_and_the_learner_agrees_with_the_engine_across_turns(engine, tiny_chat_model):
    """The loss and its gradient do not move when the environment's positions change (their old logprobs), and
    do when the mask is widened over them; the learner's logprobs of sampled tokens equal the engine's over 3-turn
    episodes, within the tolerance of single-turn completions."""
    from rlreason.batching import build_train_batch
    from rlreason.learner.learner import Learner
    from rlreason.recipe import load_config

    problems = _played(get_task("arithmetic").eval_problems(3), turns=3)
    groups = engine.generate(problems, SamplingSpec(4, 10, episode=EpisodeSpec(max_turns=3)))
    rng = random.Random(0)
    scored = [ScoredGroup(p, g, [VerifyResult(float(rng.random() < 0.5)) for _ in g]) for p, g in zip(problems,
                                                                                                      groups)]
    cfg = load_config(None, [f"model.path={tiny_chat_model}", "model.dtype=float32"])
    learner = Learner(cfg)
    batch = build_train_batch(scored, cfg.algorithm)
    env_positions = (batch.attention_mask.bool() & (batch.loss_mask == 0))
    env_positions[:, : min(len(g[0].prompt_ids) for g in groups)] = False  # (after the prompt)
    assert env_positions.any()

    def loss_and_grad(b):
        learner.model.zero_grad()
        out, _ = learner._forward(b.input_ids, b.attention_mask, with_entropy=False)
        diff = ((out.logprobs - b.rollout_logprobs) * b.loss_mask).sum()
        diff.backward()
        grad = torch.cat([p.grad.flatten() for p in learner.model.parameters() if p.grad is not None])
        return float(diff), grad.clone(), out.logprobs.detach()

    base_loss, base_grad, logprobs = loss_and_grad(batch)
    scrambled = dataclasses.replace(batch, rollout_logprobs=batch.rollout_logprobs + 7.0 * env_positions)
    loss, grad, _ = loss_and_grad(scrambled)
    assert loss == pytest.approx(base_loss, abs=1e-5) and torch.allclose(grad, base_grad)
    widened = dataclasses.replace(batch, loss_mask=batch.loss_mask + env_positions.float())
    loss, grad, _ = loss_and_grad(widened)
    assert abs(loss - base_loss) > 1e-3 and not torch.allclose(grad, base_grad)
    gap = ((logprobs - batch.rollout_logprobs).abs() * batch.loss_mask).max()
    assert gap < 1e-3, float(gap)
    assert batch.loss_mask.sum() == sum(c.sampled for g in groups for c in g)
