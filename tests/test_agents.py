"""Agent programs written only against the OpenAI SDK, through the engine's endpoint: every call recorded token for
token and joined into rows the learner agrees with; bad requests get HTTP errors while the run goes on; a program
that raises, hangs, never calls the model or returns nothing fails its episode; calls that do not extend each other
become rows sharing their sample's advantage; a recipe trains on an agent from the command line."""

import dataclasses
import json
import urllib.error
import urllib.request

import pytest
import torch

from plugins import agents
from recipe_runs import train
from rlreason.rollout.agent_calls import BadRequest, render, tool_calls
from rlreason.rollout.engine import SamplingSpec
from rlreason.rollout.episodes import EpisodeSpec
from rlreason.tasks import get_task
from rlreason.types import ScoredGroup, VerifyResult


def _agent(problems, run):
    env = {"name": "agent", "config": {"run": f"plugins.agents:{run}"}}
    return [dataclasses.replace(p, meta={**p.meta, "env": env}) for p in problems]


def _masked_runs(ids, mask):
    runs, current = [], []
    for token, m in zip(ids, mask):
        if m:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def test_an_agents_calls_are_recorded_token_for_token_and_the_learner_agrees(engine, tiny_chat_model):
    from rlreason.batching import build_train_batch
    from rlreason.learner.learner import Learner
    from rlreason.recipe import load_config

    problems = _agent(get_task("calculator").eval_problems(3), "two_tools")
    agents.SEEN.clear()
    groups = engine.generate(problems, SamplingSpec(2, 12, episode=EpisodeSpec(timeout_s=60)))
    for problem, group in zip(problems, groups):
        seen = list(agents.SEEN[problem.id].values())
        assert len(group) == 2 and [len(calls) for calls in seen] == [3, 3]  # two episodes of three calls
        for c in group:
            assert c.episode.reason == "done" and not c.extra_rows  # three calls, two tool answers: one row
            assert [t.role for t in c.episode.turns] == ["assistant", "user", "assistant", "user", "assistant"]
            calls = next(e for e in seen if e[-1][0] + e[-1][1] == c.prompt_ids + c.completion_ids)
            row = c.prompt_ids + c.completion_ids
            assert calls[0][0] == c.prompt_ids and all(row[:len(p)] == p for p, _ in calls)  # each call: the row so far
            assert _masked_runs(c.completion_ids, c.mask) == [ids for _, ids in calls if ids]  # what the agent got
            again = engine.sequence_logprobs(c.prompt_ids, c.completion_ids)
            gaps = [abs(a - b) for a, b, m in zip(again, c.logprobs, c.mask) if m]
            assert max(gaps) < 1e-3
    scored = [ScoredGroup(p, g, [VerifyResult(float(i % 2)) for i in range(len(g))]) for p, g in zip(problems, groups)]
    cfg = load_config(None, [f"model.path={tiny_chat_model}", "model.dtype=float32"])
    learner = Learner(cfg)
    batch = build_train_batch(scored, cfg.algorithm)
    out, _ = learner._forward(batch.input_ids, batch.attention_mask, with_entropy=False)
    gap = ((out.logprobs.detach() - batch.rollout_logprobs).abs() * batch.loss_mask).max()
    assert gap < 1e-3, float(gap)


def test_bad_requests_get_http_errors_and_the_episode_goes_on(engine):
    problems = _agent(get_task("calculator").eval_problems(2), "probes")
    agents.SEEN.clear()
    groups = engine.generate(problems, SamplingSpec(1, 8, episode=EpisodeSpec(timeout_s=60)))
    for problem, group in zip(problems, groups):
        # no key, no episode, not JSON, messages not a list, tool calls not objects, an empty stop string, n=2
        assert agents.SEEN[problem.id] == [401, 404, 400, 400, 400, 400, 400]
        assert group[0].episode.reason == "done" and group[0].episode.reward == 1.0
    outside = urllib.request.Request(engine._endpoint.url("anything") + "/completions", data=b'{"prompt": "x"}',
                                     headers={"Authorization": f"Bearer {engine._endpoint.key}"})
    with pytest.raises(urllib.error.HTTPError) as refused:  # between calls: no episode is under way
        urllib.request.urlopen(outside, timeout=10)
    assert refused.value.code == 404 and "no episode" in json.loads(refused.value.read())["error"]["message"]


@pytest.mark.parametrize("run,reason,error", [
    ("raises", "failed", "agent: RuntimeError: the agent's own bug"),
    ("hangs", "failed", "agent: timed out after 1 s (env.timeout_s)"),
    ("silent", "failed", "agent: the program never called the model"),
    ("returns_nothing", "failed", "agent: the program returned NoneType: return a reward (a number) or its final "
                                  "answer (text)"),
    ("two_tools", "max_turns", None),
])
def test_an_agent_that_fails_fails_its_episode_not_the_call(engine, run, reason, error):
    problems = _agent(get_task("calculator").eval_problems(2), run) + get_task("arithmetic").eval_problems(1)
    agents.SEEN.clear()
    groups = engine.generate(problems, SamplingSpec(2, 8, episode=EpisodeSpec(timeout_s=1, max_turns=2)))
    for group in groups[:2]:
        assert [(c.episode.reason, c.episode.error) for c in group] == [(reason, error)] * 2
    assert len(groups[2]) == 2 and groups[2][0].episode is None  # the call's other problems are served


def test_calls_that_do_not_extend_each_other_are_rows_sharing_their_samples_advantage(engine):
    from rlreason.batching import build_train_batch, compute_advantages
    from rlreason.recipe import load_config

    problems = _agent(get_task("calculator").eval_problems(2), "rewrites")
    groups = engine.generate(problems, SamplingSpec(4, 8, episode=EpisodeSpec(timeout_s=60)))
    assert all(len(c.extra_rows) == 1 for g in groups for c in g)
    scores = [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0]]
    scored = [ScoredGroup(p, g, [VerifyResult(s) for s in ss]) for p, g, ss in zip(problems, groups, scores)]
    algo = load_config().algorithm  # (grpo)
    batch = build_train_batch(scored, algo)
    assert batch.size == 16 and batch.sample_ids.tolist() == [i // 2 for i in range(16)]
    split = compute_advantages(batch, algo)
    single = [dataclasses.replace(g, completions=[dataclasses.replace(c, extra_rows=()) for c in g.completions])
              for g in scored]
    expected = compute_advantages(build_train_batch(single, algo), algo)  # each sample counted once
    for row in range(16):
        mask = batch.loss_mask[row].bool()
        assert torch.allclose(split[row][mask], expected[row // 2][expected[row // 2] != 0].mean().expand(
            int(mask.sum())), atol=1e-6)


def test_requests_are_checked_and_tool_calls_parsed(engine):
    with pytest.raises(BadRequest, match="messages must be a non-empty list"):
        render(engine, "chat", {"messages": []}, [])
    with pytest.raises(BadRequest, match=r"prompt token ids must lie in \[0, "):
        render(engine, "completion", {"prompt": [0, 10**7]}, [])
    with pytest.raises(BadRequest, match="max_tokens must be a positive integer"):
        render(engine, "completion", {"prompt": "x", "max_tokens": 0}, [])
    text = 'Let me add.<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    content, calls = tool_calls(text)
    assert content == "Let me add." and calls[0]["function"] == {"name": "add", "arguments": '{"a": 1, "b": 2}'}
    assert tool_calls("<tool_call>{not json}</tool_call>") == ("<tool_call>{not json}</tool_call>", [])


def test_a_recipe_trains_an_agent_from_the_command_line(tmp_path):
    steps, _, _ = train(tmp_path, "tasks:\n  train: [{agent: plugins.agents:two_tools, data: calculator}]\n"
                        "  eval: [calculator]\n  eval_size: 4\nrollout: {prompts_per_step: 4, group_size: 4}\n"
                        "train: {steps: 2}\neval: {before: false}\noutput: {tensorboard: false}\nname: a\n", "a")
    assert len(steps) == 2 and all(s["episode_turns"] == 3 and s["context_tokens"] > 0 for s in steps)
    assert all(s["logprob_mismatch"] < 1e-3 for s in steps)


def test_two_seats_of_one_episode_are_samples_of_their_own_with_zero_sum_rewards(engine):
    problems = _agent(get_task("calculator").eval_problems(2), "two_seats")
    groups = engine.generate(problems, SamplingSpec(2, 6, episode=EpisodeSpec(timeout_s=60)))
    for group in groups:
        assert [c.episode.env for c in group] == ["agent:a", "agent:b"] * 2
        assert [c.episode.reward for c in group] == [1.0, -1.0] * 2 and all(c.episode.scored for c in group)
        for c in group:  # each seat's two calls joined into one row, though the seats' calls interleaved
            assert not c.extra_rows and [t.role for t in c.episode.turns] == ["assistant", "user", "assistant"]
            again = engine.sequence_logprobs(c.prompt_ids, c.completion_ids)
            assert max(abs(a - b) for a, b, m in zip(again, c.logprobs, c.mask) if m) < 1e-3


def test_a_limit_that_ends_a_game_still_gives_each_seat_its_sample(engine):
    problems = _agent(get_task("calculator").eval_problems(1), "two_seats")
    groups = engine.generate(problems, SamplingSpec(2, 6, episode=EpisodeSpec(timeout_s=60, max_turns=1,
                                                                                 limit_reward=-0.5)))
    assert [c.episode.env for c in groups[0]] == ["agent:a", "agent:b"] * 2  # max_turns counts each seat's calls
    assert all(c.episode.reason == "max_turns" and c.episode.reward == -0.5 and c.sampled > 0 for c in groups[0])
