"""Agent episodes inside the episode loop: an agent program (``rlreason.envs.agent``) runs per sample against the
engine's OpenAI-compatible endpoint, and each of its requests joins the engine's running batch like an
environment's next turn (no second rollout path).

Every call is recorded (prompt ids, sampled ids, logprobs, policy version). When the episode ends its calls join into
training rows, tinker-cookbook style: a call whose prompt extends an earlier row (the row's tokens, then what the
agent added) continues that row, its added tokens masked as context; any other call starts a row. The rows of one
episode share its reward (``Completion.extra_rows``; the learner gives them the episode's advantage).

An episode fails (counted, never trained; see ``rlreason.episode_groups``) when its program raises, returns
neither a number nor text, never calls the model, or runs past ``env.timeout_s``. A request that reaches a limit
(the context, ``env.max_tokens``, ``env.max_turns``) is answered with HTTP 400 and ends the episode with that
limit's reason, however the program takes the refusal.
"""

from __future__ import annotations

import dataclasses
import queue
import time
import uuid
from dataclasses import dataclass, field

from rlreason.rollout import agent_calls
from rlreason.rollout.agent_calls import BadRequest, Prior, Rendered, Sampled
from rlreason.rollout.endpoint import Agents, Endpoint, error
from rlreason.rollout.turns import first_line
from rlreason.types import Completion, Episode, Problem, Turn


@dataclass
class AgentLive:
    """One agent episode under way."""

    problem: Problem
    index: int
    sample: int
    eid: str
    lora: object
    began: float
    future: object = None
    calls: list[tuple[Rendered, Sampled]] = field(default_factory=list)
    priors: dict[str, list[Prior]] = field(default_factory=dict)  # per kind: what later calls may extend
    issued: dict[str, int] = field(default_factory=dict)  # calls sent to the engine, per actor (limits, seeds)
    tokens_issued: int = 0  # tokens those calls may sample
    reason: str | None = None
    error: str | None = None
    limit: str | None = None  # a limit one of its requests reached
    result: object = None

    @property
    def sampled(self) -> int:
        return sum(len(s.ids) for _, s in self.calls)


def endpoint_of(engine, host: str) -> tuple[Endpoint, Agents]:
    """The engine's endpoint and agent runner, started on first use (they serve every later call)."""
    if getattr(engine, "_endpoint", None) is None:
        engine._endpoint, engine._agents = Endpoint(host), Agents()
    return engine._endpoint, engine._agents


class Session:
    """The agent episodes of one ``generate`` call."""

    def __init__(self, engine, sampling, spec, seeds) -> None:
        self.engine, self.sampling, self.spec, self.seeds = engine, sampling, spec, seeds
        self.endpoint, self.agents = endpoint_of(engine, spec.endpoint_host)
        self.lives: dict[str, AgentLive] = {}
        self.by_index: dict[int, list[AgentLive]] = {}
        self.outstanding: dict[int, object] = {}  # calls taken from the inbox and not answered yet

    def start(self, index: int, problem: Problem, n: int, lora) -> None:
        from rlreason.envs.agent import program_of

        spec = problem.meta["env"]
        out = self.by_index.setdefault(index, [])
        for _ in range(n):
            live = AgentLive(problem, index, len(out), uuid.uuid4().hex, lora, time.monotonic())
            out.append(live)
            try:
                program = program_of(spec.get("config", {}))
            except Exception as e:  # noqa: BLE001 - fails its episode, not the call
                self._end(live, "failed", f"agent: {first_line(e)}")
                continue
            self.lives[live.eid] = live
            self.endpoint.open(live.eid)
            live.future = self.agents.start(program, problem, self.endpoint.url(live.eid), self.endpoint.key,
                                            self.spec.timeout_s)

    @property
    def running(self) -> bool:
        return bool(self.lives)

    def requests(self, wait: bool) -> list:
        """The calls waiting at the endpoint as requests of the turn's batch (``wait``: block briefly for one)."""
        from rlreason.rollout.turns import Request

        out = []
        while True:
            try:
                call = self.endpoint.inbox.get(timeout=0.005) if wait and not out else self.endpoint.inbox.get_nowait()
            except queue.Empty:
                return out
            live = self.lives.get(call.episode)
            if live is None:
                call.answer(*error(409, "the episode has ended"))
                continue
            try:
                rendered = agent_calls.render(self.engine, call.kind, call.body, live.priors.get(call.kind, []))
                rendered.actor = call.actor
                params = self._params(live, rendered)
            except BadRequest as e:
                call.answer(*error(400, str(e)))
                continue
            except Exception as e:  # noqa: BLE001 - whatever a request's content breaks, it is the request's fault
                call.answer(*error(400, first_line(e)))
                continue
            self.outstanding[id(call)] = call
            out.append(Request(rendered.ids, params, live.lora, live.index, live.problem, call=(live, rendered, call)))

    def _params(self, live: AgentLive, rendered: Rendered):
        """The call's sampling parameters; a call past a limit ends the episode (``BadRequest``). ``env.max_turns``
        counts each actor's calls (a game's seats each have their own), ``env.max_tokens`` the episode's."""
        spec, engine = self.spec, self.engine
        room = engine.max_model_len - len(rendered.ids) - 1
        limit, reason = min(self.sampling.max_tokens, rendered.max_tokens or self.sampling.max_tokens), "context"
        if spec.max_tokens is not None and spec.max_tokens - live.tokens_issued < min(room, limit):
            room, reason = spec.max_tokens - live.tokens_issued, "max_tokens"
        turn = live.issued.get(rendered.actor, 0)
        if turn >= spec.max_turns:
            room, reason = 0, "max_turns"
        if room < 1:
            live.limit = live.limit or reason
            raise BadRequest(f"the episode reached its limit ({reason}): no more model calls")
        seed = None
        if self.seeds is not None:
            seed = self.seeds[live.index] + live.sample + sum(live.issued.values()) * 1_000_003
        params = engine._vllm.SamplingParams(
            n=1, max_tokens=min(limit, room), temperature=self.sampling.temperature, top_p=self.sampling.top_p,
            top_k=-1, logprobs=0, seed=seed, stop=rendered.stop or None, flat_logprobs=True)
        live.issued[rendered.actor] = turn + 1
        live.tokens_issued += params.max_tokens
        return params

    def finish(self, request, output) -> None:
        """Record the call's sample and answer the agent."""
        live, rendered, call = request.call
        self.outstanding.pop(id(call), None)
        ids = list(output.token_ids)
        stop = output.stop_reason if isinstance(output.stop_reason, str) else None
        sampled = Sampled(ids, self.engine.logprobs_of(output, ids), output.text, stop,
                          output.finish_reason or "length", output.finish_reason == "stop" and output.stop_reason
                          is None, self.engine.version)
        if rendered.logprobs:
            sampled.tokens = self.engine.tokenizer.convert_ids_to_tokens(ids)
        if live.reason is not None:
            call.answer(*error(409, "the episode has ended"))
            return
        live.calls.append((rendered, sampled))
        body, key = agent_calls.response(rendered, sampled)
        if key is not None:
            live.priors.setdefault(rendered.kind, []).append(Prior(key, rendered.ids + ids, sampled.eos))
        call.answer(200, body)

    def reap(self) -> None:
        """End the episodes whose program returned, raised or overran."""
        now = time.monotonic()
        for live in list(self.lives.values()):
            if live.future.done():
                self._settle(live)
            elif now - live.began > self.spec.timeout_s:
                self.agents.stop(live.future)
                self._end(live, "failed", f"agent: timed out after {self.spec.timeout_s:g} s (env.timeout_s)")

    def _settle(self, live: AgentLive) -> None:
        try:
            result = live.future.result()
        except BaseException as e:  # noqa: BLE001 - the program's failure fails its episode
            if live.limit is not None:
                return self._end(live, live.limit)
            return self._end(live, "failed", f"agent: {first_line(e)}")
        if not live.calls:
            return self._end(live, "failed", "agent: the program never called the model")
        if isinstance(result, dict):  # a reward per actor (the seats of a game)
            actors = {r.actor for r, _ in live.calls}
            if set(result) != actors or not all(isinstance(v, (int, float)) for v in result.values()):
                return self._end(live, "failed", f"agent: the program returned rewards for {sorted(result)}; its "
                                 f"calls came from actors {sorted(actors)} (a number for each)")
        elif isinstance(result, bool) or not isinstance(result, (int, float, str)):
            return self._end(live, "failed", f"agent: the program returned {type(result).__name__}: return a "
                             "reward (a number) or its final answer (text)")
        live.result = result
        self._end(live, live.limit or "done")

    def _end(self, live: AgentLive, reason: str, error_text: str | None = None) -> None:
        live.reason, live.error = reason, error_text
        self.endpoint.close(live.eid)
        self.lives.pop(live.eid, None)

    def abort(self) -> None:
        """The call is failing: every episode ends, every request waiting on the engine is answered."""
        for live in list(self.lives.values()):
            self.agents.stop(live.future)
            self._end(live, "failed", "agent: the call was interrupted")
        for call in list(self.outstanding.values()):
            call.answer(*error(503, "the engine's call was interrupted"))
        self.outstanding.clear()
        while not self.endpoint.inbox.empty():
            self.endpoint.inbox.get_nowait().answer(*error(503, "the engine's call was interrupted"))

    def completions(self, index: int, gen_s: float) -> list[Completion]:
        """The problem's samples: one per episode, or with rewards per actor one per actor of each episode."""
        out = []
        for live in self.by_index.get(index, []):
            actors = sorted({r.actor for r, _ in live.calls})
            if isinstance(live.result, dict):
                out += [_completion(live, self.engine, self.spec, gen_s, actor) for actor in sorted(live.result)]
            elif len(actors) > 1 or actors and actors[0]:  # a limit ended a game: each seat its own sample
                out += [_completion(live, self.engine, self.spec, gen_s, actor) for actor in actors]
            else:
                out.append(_completion(live, self.engine, self.spec, gen_s))
        return out


def _rows(calls: list[tuple[Rendered, Sampled]]) -> list[dict]:
    """The calls joined into rows: a call extending a row's tokens continues it (what it added: context)."""
    rows: list[dict] = []
    for rendered, sampled in calls:
        prompt = rendered.ids
        for row in reversed(rows):
            n = len(row["prompt"]) + len(row["ids"])
            if len(prompt) >= n and prompt[len(row["prompt"]):n] == row["ids"] and prompt[:len(row["prompt"])] \
                    == row["prompt"]:
                added = prompt[n:]
                row["ids"] += added + sampled.ids
                row["logprobs"] += [0.0] * len(added) + sampled.logprobs
                row["mask"] += [0] * len(added) + [1] * len(sampled.ids)
                row["version"] = min(row["version"], sampled.version)
                row["finish"] = sampled.finish
                break
        else:
            rows.append({"prompt": list(prompt), "ids": list(sampled.ids), "logprobs": list(sampled.logprobs),
                         "mask": [1] * len(sampled.ids), "version": sampled.version, "finish": sampled.finish})
    return rows


def _turns(calls: list[tuple[Rendered, Sampled]]) -> list[Turn]:
    turns = []
    for rendered, sampled in calls:
        if rendered.extends:
            turns.append(Turn("user", "", 0))
        tools = len(agent_calls.tool_calls(sampled.text)[1]) if rendered.tools else 0
        turns.append(Turn("assistant", sampled.text, len(sampled.ids), tool_calls=tools))
    return turns


def _completion(live: AgentLive, engine, spec, gen_s: float, actor: str | None = None) -> Completion:
    """A sample of the episode (``actor``: one actor's calls and reward) as a row and its extra rows."""
    from rlreason.rollout.turns import shaped_reward

    calls = live.calls if actor is None else [(r, s) for r, s in live.calls if r.actor == actor]
    turns = _turns(calls)
    result = live.result[actor] if actor is not None and isinstance(live.result, dict) else live.result
    scored = isinstance(result, (int, float))
    reward = float(result) if scored else None
    if live.reason not in ("done", "failed") and reward is None:
        reward, scored = spec.limit_reward, True
    episode = Episode(env="agent" if actor is None else f"agent:{actor}", turns=turns, reason=live.reason or "failed",
                      reward=shaped_reward(reward, turns, spec), error=live.error, env_s=time.monotonic() - live.began,
                      gen_s=gen_s, scored=scored)
    rows = _rows(calls) or [{"prompt": [], "ids": [], "logprobs": [], "mask": [], "version": engine.version,
                             "finish": "stop"}]
    text = result if isinstance(result, str) else (calls[-1][1].text if calls else "")
    made = [Completion(problem_id=live.problem.id, prompt_ids=r["prompt"], completion_ids=r["ids"],
                       logprobs=r["logprobs"], finish_reason=r["finish"], policy_version=r["version"], text=text,
                       mask=r["mask"], episode=episode) for r in rows]
    return dataclasses.replace(made[0], extra_rows=tuple(made[1:])) if len(made) > 1 else made[0]
