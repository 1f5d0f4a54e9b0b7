"""The environment contract (``Environment``, ``StepResult``) and the registry; re-exported by ``rlreason.envs``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlreason.registry import Registry
from rlreason.types import ENV_REWARD, Problem  # noqa: F401  (ENV_REWARD: re-exported)

Observation = str | list[dict]  # text (plain prompts), or messages ({role, content}) for the chat template


@dataclass
class StepResult:
    """What the environment answers to one model turn."""

    observation: Observation | None = None  # the next message(s) to the model; None: nothing more (done)
    reward: float | None = None  # the episode's reward, when the environment gives it (usually with done)
    done: bool = False
    solved: bool | None = None  # the environment's verdict on the task (accuracy), when it has one
    tool_calls: int = 0  # tool calls it read in this turn (for the episode's metrics)
    tool_errors: int = 0  # of those: malformed, unknown tool, bad arguments, raised or timed out
    info: dict[str, Any] = field(default_factory=dict)  # kept as the episode's record (Episode.info)


class Environment:
    """Base class of environments (optional: any object with ``reset`` and ``step`` will do)."""

    stop: tuple[str, ...] = ()  # strings that end a model turn besides EOS
    role: str = "user"  # the role of the environment's messages in the chat template
    rewards: bool = True  # its reward scores the episode; False: the data task's verifier judges the final text

    def __init__(self, **config) -> None:
        self.config = config

    def reset(self, problem: Problem) -> Observation:
        raise NotImplementedError

    def step(self, action: str) -> StepResult:
        raise NotImplementedError

    def tools(self) -> list[Callable]:
        """Functions offered to the model through a chat template that supports tools (none by default)."""
        return []

    def final_answer(self) -> str | None:
        """The text the data task's verifier judges (``rewards = False``); None: the model's turns joined."""
        return None

    def close(self) -> None:
        """Release what the episode holds (a sandbox, files)."""


ENVIRONMENTS: Registry[type] = Registry("environment")


def environment(name: str) -> Callable[[type], type]:
    """Class decorator: register an environment under ``name``."""
    return ENVIRONMENTS.register(name)


def get_environment(name: str) -> type:
    return ENVIRONMENTS.get(name)


def listing() -> list[str]:
    """Two lines per registered environment: its summary; its fields, stop strings and problems."""
    import inspect

    lines = []
    for name in ENVIRONMENTS.names():
        env = ENVIRONMENTS.get(name)
        doc = (env.__doc__ or "").strip().splitlines()
        fields = [p for p in inspect.signature(env.__init__).parameters.values() if p.name != "self"
                  and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        shown = ", ".join(f"{p.name}={p.default!r}" if p.default is not p.empty else p.name for p in fields)
        lines.append(f"{name:12s} {doc[0] if doc else ''}")
        lines.append(f"{'':12s} fields: {shown or '-'}; turn ends at EOS{''.join(f' or {s!r}' for s in env.stop)}"
                     f"{'; own problems' if hasattr(env, 'sample') else '; needs data: TASK'}")
    return lines
