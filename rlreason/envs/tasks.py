"""Environments as tasks: a recipe entry ``{env: NAME}`` (the environment's own problems) or ``{env: NAME, data:
TASK}`` (a task's problems, played in the environment) becomes a task like any other, whose problems carry the
environment (``meta["env"]``: its name and the entry's ``config``). Their reward is the environment's (verifier
``environment``) unless the entry names a verifier, or the environment leaves judging to the data task's verifier
(``rewards = False``: a math task's answer, judged at the end of the episode on the model's own text).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from pydantic import Field, model_validator

from rlreason.envs.base import ENV_REWARD
from rlreason.registry import UnknownNameError
from rlreason.section import Section
from rlreason.types import Problem


class EnvTaskSpec(Section):
    """A task played in an environment (see ``rlreason.envs.tasks``)."""

    env: str = Field(description="a registered environment (rlreason envs), or module:Class")
    data: str | None = Field(None, description="a task whose problems are played (default: the environment's own)")
    name: str | None = Field(None, description="task name (default: the environment's, with the data task's)")
    config: dict[str, Any] = Field({}, description="keyword arguments of the environment")
    verifier: str | None = Field(None, description="score the episode's final text with this verifier instead "
                                 "(default: the data task's, else the environment's reward)")

    @property
    def task_name(self) -> str:
        return self.name or (self.env.replace(":", "_") + (f"_{self.data}" if self.data else ""))

    @model_validator(mode="after")
    def _register(self) -> "EnvTaskSpec":
        from rlreason.envs.base import get_environment
        from rlreason.tasks.registry import TASKS

        try:  # an unknown name or a module that does not import: one line (did-you-mean, the import error)
            env = get_environment(self.env)
            if self.data is not None:
                TASKS.get(self.data)
            if self.verifier is not None and self.verifier != ENV_REWARD:
                from rlreason.verifiers import VERIFIERS

                VERIFIERS.get(self.verifier)
        except UnknownNameError as e:
            raise ValueError(str(e)) from None
        if hasattr(env, "check"):  # the environment's own check of its config (an agent program that imports)
            env.check(dict(self.config))
        if self.data is None and not hasattr(env, "sample"):
            raise ValueError(f"env {self.env!r} has no problems of its own: give data: TASK")
        known = TASKS.get(self.task_name) if self.task_name in TASKS.names() else None
        if known is not None and not isinstance(known, EnvTask):
            raise ValueError(f"name: {self.task_name!r} is another task's; give this one another name")
        if known is None or known.spec != self:
            TASKS.register(self.task_name, EnvTask.of(self), replace=lambda old: isinstance(old, EnvTask))
        return self


@dataclass(frozen=True)
class EnvTask:
    """The task of an ``EnvTaskSpec``: the data task's (or the environment's own synthetic) problems, each carrying
    the environment."""

    spec: EnvTaskSpec
    source: object  # the data task, or a SyntheticTask over the environment's sample()

    @classmethod
    def of(cls, spec: EnvTaskSpec) -> "EnvTask":
        from rlreason.envs.base import get_environment
        from rlreason.tasks.registry import get_task
        from rlreason.tasks.synthetic import SyntheticTask

        if spec.data is not None:
            return cls(spec, get_task(spec.data))
        env = get_environment(spec.env)
        return cls(spec, SyntheticTask(spec.task_name, _doc(env), env.sample,
                                       max_tokens=getattr(env, "max_tokens", 48)))

    @property
    def name(self) -> str:
        return self.spec.task_name

    @property
    def description(self) -> str:
        what = f"{self.spec.data}'s problems" if self.spec.data else "its own problems"
        return f"environment {self.spec.env} on {what}"

    @property
    def max_tokens(self) -> int | None:
        return getattr(self.source, "max_tokens", None)

    @property
    def held_out_size(self) -> int | None:
        return getattr(self.source, "held_out_size", None)

    def _played(self, problem: Problem) -> Problem:
        from rlreason.envs.base import get_environment

        own = getattr(get_environment(self.spec.env), "rewards", True) or not self.spec.data
        verifier = self.spec.verifier or (ENV_REWARD if own else problem.verifier)
        env = {"name": self.spec.env, "config": dict(self.spec.config)}
        return replace(problem, verifier=verifier, task=self.name, meta={**problem.meta, "env": env})

    def eval_problems(self, n: int | None = None, data_dir: str | None = None) -> list[Problem]:
        return [self._played(p) for p in self.source.eval_problems(n, data_dir)]

    def train_problems(self, seed: int, data_dir: str | None = None) -> Iterator[Problem]:
        return (self._played(p) for p in self.source.train_problems(seed, data_dir))

    def examples(self, seed: int):
        """(problem, worked transcript) pairs, for pretraining the embedded model on the environment's format."""
        return ((self._played(p), s) for p, s in self.source.examples(seed))


def _doc(env) -> str:
    return ((env.__doc__ or env.__name__).strip().splitlines() or [env.__name__])[0]
