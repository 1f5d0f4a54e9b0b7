"""Pieces the environment loop (``episodes``) and the agent loop (``agent_episodes``) share: the recipe's episode
limits, the chat template's rendering of new messages after earlier ones, the reward's shaping, a batch request."""

from __future__ import annotations

from dataclasses import dataclass

from rlreason.types import Turn


def first_line(error: BaseException) -> str:
    """An error as one line: its type and the first line of its message (at most 300 characters)."""
    return (f"{type(error).__name__}: {error}".strip().splitlines() or ["error"])[0][:300]


@dataclass(frozen=True)
class EpisodeSpec:
    """The recipe's ``env`` section as the engines need it."""

    max_turns: int = 8  # model turns
    max_tokens: int | None = None  # tokens after the prompt (sampled and the environment's); None: the context
    limit_reward: float = 0.0  # reward of an episode a limit ended, when its environment gave none
    turn_penalty: float = 0.0  # subtracted per model turn after the first
    tool_call_penalty: float = 0.0  # subtracted per tool call
    discount: float = 1.0  # the reward times discount ** (model turns - 1)
    timeout_s: float = 600.0  # an agent program's episode (rlreason.envs.agent)
    endpoint_host: str = "127.0.0.1"  # where the agents' OpenAI-compatible endpoint listens


class ChatDelta:
    """Token ids of new messages in the chat template, as they follow an assistant turn that ended at EOS."""

    BASE = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.base = tokenizer.apply_chat_template(self.BASE, tokenize=False)
        eos = tokenizer.eos_token or ""
        closing = self.base[self.base.rindex("y") + 1:]  # what the template writes after an assistant's text
        self.glue = closing[len(eos):] if eos and closing.startswith(eos) else closing
        self.closing = closing

    def ids(self, messages: list[dict], after_eos: bool) -> list[int]:
        text = self.tokenizer.apply_chat_template(self.BASE + messages, add_generation_prompt=True, tokenize=False)
        if not text.startswith(self.base):
            raise ValueError("the chat template does not render new messages after earlier ones unchanged")
        new = (self.glue if after_eos else self.closing) + text[len(self.base):]
        return list(self.tokenizer.encode(new, add_special_tokens=False))


def observation_ids(tokenizer, delta: ChatDelta | None, observation, role: str, after_eos: bool) -> list[int]:
    """The environment's answer as token ids: its messages through the chat template (``delta``), or its text
    appended as it is (plain prompts)."""
    if delta is None:
        text = observation if isinstance(observation, str) else "".join(m["content"] for m in observation)
        return list(tokenizer.encode(text, add_special_tokens=False))
    messages = [{"role": role, "content": observation}] if isinstance(observation, str) else list(observation)
    return delta.ids(messages, after_eos)


def shaped_reward(reward: float | None, turns: list[Turn], spec: EpisodeSpec) -> float | None:
    """The reward after the recipe's per-turn and per-tool-call penalties and its discount."""
    if reward is None:
        return None
    model_turns = sum(t.role == "assistant" for t in turns)
    reward -= spec.turn_penalty * max(0, model_turns - 1) + spec.tool_call_penalty * sum(t.tool_calls for t in turns)
    return reward * spec.discount ** max(0, model_turns - 1)


@dataclass
class Request:
    """One request of a turn's batch: a group's shared first turn (``live`` None) or one episode's next turn."""

    ids: list[int]
    params: object
    lora: object
    index: int  # the problem's index in the call
    problem: object  # rlreason.types.Problem
    live: object = None  # episodes.Live
    group: list | None = None  # a group's episodes sharing their first turn (one request of n samples)
    call: tuple | None = None  # an agent's request (rlreason.rollout.agent_episodes)
