"""Agent programs: any code written against the OpenAI SDK, trained as it is.

A recipe names the program and the problems it plays::

    tasks:
      train: [{agent: my_agent:run, data: gsm8k}]

with ``my_agent.py`` (importable from the directory you run rlreason in)::

    async def run(client, problem):  # client: openai.AsyncOpenAI pointed at the run's own engines
        reply = await client.chat.completions.create(model="policy", messages=[
            {"role": "user", "content": problem.prompt}])
        return reply.choices[0].message.content  # the final answer (the task's verifier judges it), or a reward

Each sample of a problem runs the program once, with a client whose ``base_url`` is the rollout engine's
OpenAI-compatible endpoint (``rlreason.rollout.endpoint``) for that episode and whose key is the run's. Every
request is sampled by the engine in its running batch and recorded token for token; the episode's calls become its
training rows (``rlreason.rollout.agent_episodes``). A plain ``def run(client, problem)`` gets a blocking
``openai.OpenAI`` client instead (it runs on a thread). Agent frameworks built on the OpenAI SDK work unchanged: give
them ``client`` (or its ``base_url`` and ``api_key``). The recipe's sampling settings rule (an agent's
``temperature`` is ignored); ``env.timeout_s`` bounds an episode; ``env.max_turns`` counts model calls.
"""

from __future__ import annotations

import inspect

from rlreason.envs.base import Environment, environment

ACTOR = "X-Rlreason-Actor"  # the request header naming the actor of a call (``seat``)


def program_of(config: dict):
    """The agent program a task's ``config`` names (``run: module:function``); ValueError in one line."""
    ref = config.get("run")
    if not isinstance(ref, str) or ":" not in ref:
        raise ValueError(f"agent: {ref!r} is not module:function (e.g. my_agent:run)")
    module_name, _, name = ref.partition(":")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"agent {ref!r}: cannot import {module_name!r}: {e}") from None
    program = getattr(module, name, None)
    if not callable(program):
        raise ValueError(f"agent {ref!r}: module {module_name!r} has no function {name!r}")
    try:
        inspect.signature(program).bind(None, None)
    except TypeError:
        raise ValueError(f"agent {ref!r}: the program must take (client, problem)") from None
    return program


@environment("agent")
class AgentProgram(Environment):
    """An agent program written against the OpenAI SDK (tasks: {agent: module:function, data: TASK})."""

    program = True  # its turns come over HTTP from the program, not from reset/step (the episode loop knows)
    rewards = False  # a program that returns text is judged by the data task's verifier; a number is the reward

    @staticmethod
    def check(config: dict) -> None:
        program_of(config)

    @staticmethod
    def entry(entry: dict) -> dict:
        """A recipe's ``{agent: ref, data: ..., ...}`` as the environment entry it stands for."""
        entry = dict(entry)
        ref = entry.pop("agent")
        name = entry.pop("name", None) or str(ref).replace(":", "_").replace(".", "_") + (
            f"_{entry['data']}" if entry.get("data") else "")
        return {**entry, "env": "agent", "name": name, "config": {**entry.get("config", {}), "run": ref}}


def seat(client, name: str):
    """The program's ``client`` for one actor (a seat of a game played by the policy against itself): that actor's
    calls are a sample of their own, rewarded by the program returning ``{name: reward, ...}``."""
    return client.with_options(default_headers={ACTOR: name})


def agent_entries(values: dict) -> dict:
    """A recipe's ``tasks`` with every ``{agent: ...}`` entry of ``train`` / ``eval`` as its environment entry, and
    every ``{verifiers: MODULE}`` / ``{game: ID}`` as the task ``verifiers:MODULE`` / ``game:ID``."""
    if not isinstance(values, dict):
        return values
    out = dict(values)
    for key in ("train", "eval"):
        if isinstance(values.get(key), (list, tuple)):
            out[key] = [_entry(e) for e in values[key]]
    return out


def _entry(entry):
    if isinstance(entry, dict) and "agent" in entry:
        return AgentProgram.entry(entry)
    for key in ("verifiers", "game"):  # {verifiers: MODULE} is the task verifiers:MODULE, {game: ID} is game:ID
        if isinstance(entry, dict) and key in entry:
            if set(entry) != {key}:
                raise ValueError(f"{{{key}: ...}} takes no other keys (got {sorted(set(entry) - {key})})")
            return f"{key}:{entry[key]}"
    return entry
