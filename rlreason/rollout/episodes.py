"""The episode loop, in the engine: every problem's samples as episodes, token in and token out.

A problem without an environment is an episode of one turn (its group shares one request: ``n`` samples). A problem
with one (``meta["env"]``) gets an environment instance per sample; all live episodes advance together, one vLLM
batch per turn (prefix caching reuses each episode's growing context). The trajectory is the exact token ids the
engine sampled with the environment's tokens appended as ids: the model's tokens are never decoded and encoded again
(the decoded text only goes to the environment). The chat template is applied to the environment's new messages
only, never to the model's past turns, so templates that rewrite earlier turns (thinking models) cannot make the
trajectory drift: ``ChatDelta`` renders the new messages after a fixed conversation and keeps what follows it.

Limits (``EpisodeSpec``): model turns, tokens after the prompt, and the context; an episode that reaches one ends
with that reason. An environment that raises fails its episode (reason ``failed``, the error kept), not the call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rlreason.rollout.prompts import chat_prompt_ids
from rlreason.rollout.turns import (ChatDelta, EpisodeSpec, Request, first_line, observation_ids,  # noqa: F401
                                    shaped_reward)
from rlreason.types import Completion, Episode, Problem, Turn


@dataclass
class Live:
    """An episode under way."""

    problem: Problem
    env: object
    name: str
    prompt: list[int]
    sample: int = 0  # which of its problem's episodes
    ids: list[int] = field(default_factory=list)  # after the prompt: sampled and environment tokens
    logprobs: list[float] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    reward: float | None = None
    solved: bool | None = None
    reason: str | None = None  # set when it ends
    error: str | None = None
    env_s: float = 0.0
    finish: str = "stop"
    info: dict = field(default_factory=dict)  # the environment's last non-empty StepResult.info

    def add(self, ids: list[int], logprobs: list[float] | None, sampled: bool) -> None:
        self.ids += ids
        self.logprobs += logprobs if sampled else [0.0] * len(ids)
        self.mask += [int(sampled)] * len(ids)

    def end(self, reason: str, error: str | None = None) -> None:
        self.reason, self.error = reason, error
        if error is None:
            _close(self.env)


def _close(env) -> None:
    try:
        getattr(env, "close", lambda: None)()
    except Exception:  # noqa: BLE001 - a failing close does not fail an ended episode
        pass


def first_prompt(engine, problem: Problem, observation) -> list[int]:
    """The episode's prompt from the environment's first observation (the problem's own template applies)."""
    if isinstance(observation, list) or "messages" in problem.meta:
        messages = observation if isinstance(observation, list) else [*problem.meta["messages"][:-1],
                                                                     {"role": "user", "content": observation}]
        return chat_prompt_ids(engine.tokenizer, messages)
    return list(engine.tokenizer.encode(observation))


def episode_completion(live: Live, version: int, spec: EpisodeSpec, gen_s: float) -> Completion:
    """The finished episode as one training row: its reward after the recipe's penalties and discount."""
    reward = live.reward
    if reward is None and live.reason != "failed":
        reward = spec.limit_reward
    episode = Episode(env=live.name, turns=live.turns, reason=live.reason or "done",
                      reward=shaped_reward(reward, live.turns, spec), solved=live.solved, error=live.error,
                      env_s=live.env_s, gen_s=gen_s, info=dict(live.info))
    answer = getattr(live.env, "final_answer", lambda: None)()  # (an environment that names the text to judge)
    return Completion(problem_id=live.problem.id, prompt_ids=live.prompt, completion_ids=live.ids,
                      logprobs=live.logprobs, finish_reason=live.finish, policy_version=version,
                      text=answer if isinstance(answer, str) else "".join(live.texts), mask=live.mask,
                      episode=episode)


def start(engine, problem: Problem, n: int) -> list[Live]:
    """``n`` episodes of ``problem``, reset (an environment that raises fails its episode at once)."""
    from rlreason.envs import get_environment

    spec = problem.meta["env"]
    out = []
    for _ in range(n):
        began = time.perf_counter()
        live = Live(problem, None, spec["name"], [], sample=len(out))
        try:
            live.env = get_environment(spec["name"])(**spec.get("config", {}))
            live.prompt = first_prompt(engine, problem, live.env.reset(problem))
        except Exception as e:  # noqa: BLE001 - an environment's failure fails its episode, not the call
            live.end("failed", f"reset: {first_line(e)}")
        live.env_s += time.perf_counter() - began
        out.append(live)
    return out


def run(engine, problems: list[Problem], sampling, lora_requests: list, seeds: list[int] | None
        ) -> list[list[Completion]]:
    """``sampling.n`` completions (or episodes) per problem, grouped per problem in input order."""
    spec = sampling.episode or EpisodeSpec()
    groups: list[list] = [[] for _ in problems]
    lives: dict[int, list[Live]] = {}
    requests, agents = [], None
    try:  # (programs already started must not outlive a problem that cannot start)
        for i, problem in enumerate(problems):
            seed = None if seeds is None else seeds[i]
            if "env" not in problem.meta:
                requests.append(Request(engine._prompt_ids(problem), engine.params(sampling, seed), lora_requests[i], i,
                                        problem))
                continue
            if _is_agent(problem):
                if agents is None:
                    from rlreason.rollout.agent_episodes import Session

                    agents = Session(engine, sampling, spec, seeds)
                agents.start(i, problem, sampling.n, lora_requests[i])
                continue
            lives[i] = start(engine, problem, sampling.n)
            by_lora: dict = {}  # (a team's episodes: each turn under the adapter of the member that writes it)
            for live in lives[i]:
                if live.reason is None:
                    lora = engine.member_lora(live.env, lora_requests[i])
                    by_lora.setdefault((id(lora), tuple(live.prompt)), (lora, []))[1].append(live)
            for lora, ready in by_lora.values():  # episodes with one first prompt and adapter: one request samples
                requests.append(Request(ready[0].prompt, None, lora, i, problem, group=ready))  # their first turns
    except BaseException:
        if agents is not None:
            agents.abort()
        raise
    gen_s = _play(engine, requests, sampling, spec, seeds, groups, agents)
    for i, group in lives.items():
        groups[i] = [episode_completion(live, engine.version, spec, gen_s) for live in group]
    for i in (agents.by_index if agents is not None else ()):
        groups[i] = agents.completions(i, gen_s)
    return groups


def _is_agent(problem: Problem) -> bool:
    from rlreason.envs import get_environment

    return bool(getattr(get_environment(problem.meta["env"]["name"]), "program", False))


def _play(engine, requests: list[Request], sampling, spec: EpisodeSpec, seeds, groups: list[list],
          agents=None) -> float:
    """Every request until every episode has ended, continuously: an episode whose turn finished is given the
    environment's answer and its next turn joins the engine's running batch at once (no barrier between turns, no
    call per turn); so do the requests agent programs send to the endpoint (``agents``). A group's shared first
    turn (no environment) goes straight into ``groups``. Returns the seconds spent in the engine. (vLLM's
    ``LLM.generate`` is add-requests-then-step-until-done; here the loop adds the next turns as it steps.)"""
    llm, pending, gen_s = engine.llm, {}, 0.0

    def submit(batch: list[Request]) -> None:
        for r in batch:
            if r.group is not None:
                seed = None if seeds is None else seeds[r.index]
                r.params = engine.turn_params(sampling, r.group[0].env, _room(engine, r.group[0], sampling, spec),
                                              seed, n=len(r.group))
            elif r.live is not None:
                turn = sum(t.role == "assistant" for t in r.live.turns)
                seed = None if seeds is None else seeds[r.index] + r.live.sample + turn * 1_000_003
                r.params = engine.turn_params(sampling, r.live.env, _room(engine, r.live, sampling, spec), seed)
        if not batch:
            return
        ids = llm._add_completion_requests([{"prompt_token_ids": r.ids} for r in batch], [r.params for r in batch],
                                           use_tqdm=False, lora_request=[r.lora for r in batch])
        pending.update((rid.rsplit("-", 1)[0], r) for rid, r in zip(ids, batch))  # (outputs carry the external id)

    try:
        submit(requests)
        while pending or (agents is not None and agents.running):
            if agents is not None:
                submit(agents.requests(wait=not pending))
            if pending:
                began = time.perf_counter()
                outputs = llm.llm_engine.step()
                gen_s += time.perf_counter() - began
                submit(_finished(engine, outputs, pending, spec, groups, agents))
            if agents is not None:
                agents.reap()
    except BaseException:
        if pending:  # (the engine serves later calls: nothing of this one may stay queued in it)
            llm.llm_engine.abort_request(list(pending))
        if agents is not None:
            agents.abort()
        raise
    return gen_s


def _finished(engine, outputs, pending: dict, spec: EpisodeSpec, groups: list[list], agents) -> list[Request]:
    """Handle the requests that finished in a step; the episodes' next turns."""
    following = []
    for out in outputs:
        if not out.finished:
            continue
        r = pending.pop(out.request_id)
        if r.call is not None:
            agents.finish(r, out.outputs[0])
        elif r.live is None and r.group is None:
            groups[r.index] = [engine._completion(r.problem, out.prompt_token_ids, o) for o in out.outputs]
        else:
            for live, o in zip(r.group or [r.live], out.outputs):
                if _turn(engine, live, o, spec):
                    following.append(Request(live.prompt + live.ids, None, engine.member_lora(live.env, r.lora),
                                             r.index, r.problem, live))
    return following


def _room(engine, live: Live, sampling, spec: EpisodeSpec) -> int:
    """Tokens this turn may sample: the turn limit, what the episode's budget and the context leave."""
    left = engine.max_model_len - len(live.prompt) - len(live.ids) - 1
    if spec.max_tokens is not None:
        left = min(left, spec.max_tokens - len(live.ids))
    return min(sampling.max_tokens, left)


def _turn(engine, live: Live, output, spec: EpisodeSpec) -> bool:
    """Record the model's turn, ask the environment, append its answer; whether the episode goes on."""
    ids = list(output.token_ids)
    live.add(ids, engine.logprobs_of(output, ids), sampled=True)
    text = engine.tokenizer.decode(ids, skip_special_tokens=True)
    live.texts.append(text)
    eos = output.finish_reason == "stop" and output.stop_reason is None
    began = time.perf_counter()
    try:
        result = live.env.step(text)
    except Exception as e:  # noqa: BLE001 - the environment's failure fails this episode only
        live.turns.append(Turn("assistant", text, len(ids)))
        live.env_s += time.perf_counter() - began
        live.end("failed", f"step: {first_line(e)}")
        return False
    live.env_s += time.perf_counter() - began
    live.turns.append(Turn("assistant", text, len(ids), result.tool_calls, result.tool_errors))
    live.reward = result.reward if result.reward is not None else live.reward
    live.solved = result.solved if result.solved is not None else live.solved
    live.info = result.info or live.info
    live.finish = output.finish_reason or "length"  # (a turn cut at rollout.max_tokens goes on: the environment
    if result.done or result.observation is None:     # saw its text and answered it)
        live.end("done")
        return False
    if sum(t.role == "assistant" for t in live.turns) >= spec.max_turns:
        live.end("max_turns")
        return False
    obs = engine.observation_ids(live.problem, result.observation, getattr(live.env, "role", "user"), eos)
    if len(live.prompt) + len(live.ids) + len(obs) >= engine.max_model_len - 1 or (
            spec.max_tokens is not None and len(live.ids) + len(obs) >= spec.max_tokens):
        live.end("context" if spec.max_tokens is None else "max_tokens")
        return False
    live.add(obs, None, sampled=False)
    observed = result.observation if isinstance(result.observation, str) else "".join(
        m["content"] for m in result.observation)
    live.turns.append(Turn(getattr(live.env, "role", "user"), observed, len(obs)))
    return True
