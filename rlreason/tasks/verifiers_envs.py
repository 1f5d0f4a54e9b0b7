"""Environments of the ``verifiers`` package (PyPI ``verifiers`` 0.4, its v1 API) as tasks: ``verifiers:MODULE``
(or ``{verifiers: MODULE}`` in a recipe) names an importable module whose ``__all__`` exports a ``vf.Taskset``
(and optionally a ``vf.Env``). Its tasks are this task's problems; each is played by the agent program
``rlreason.envs.vf:run``, which runs the environment's own episode against the rollout engine's endpoint (so its
calls are recorded and trained token for token) and returns the reward its rubric gives.

A taskset has no held-out split: the evaluation set is its first ``held_out`` (32) tasks (all of them when it has
fewer, then the training stream shares them; say so in your report) and the training stream cycles through the rest
in an order drawn from the run's seed. The package needs Python 3.11+ (``pip install 'rlreason[envs]'``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from rlreason.registry import UnknownNameError
from rlreason.types import ENV_REWARD, Problem

PREFIX = "verifiers"
PROGRAM = "rlreason.envs.vf:run"


@lru_cache(maxsize=None)
def tasks_of(module: str) -> tuple:
    """The taskset's tasks (loaded once per process)."""
    try:
        import verifiers.v1 as vf
    except ImportError as e:
        raise UnknownNameError(f"verifiers:{module} needs the verifiers package (Python 3.11+): pip install "
                               f"'rlreason[envs]' ({e})") from None
    try:
        taskset = vf.load_taskset(vf.taskset_config_type(module)(id=module))
    except (ImportError, ValueError, TypeError) as e:
        raise UnknownNameError(f"verifiers:{module}: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
    return tuple(taskset)


def _text(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "") if isinstance(m, dict) else getattr(m, "content", "")) for m in
                     prompt or [])


@dataclass(frozen=True)
class VerifiersTask:
    module: str
    held_out: int = 32  # the first this-many tasks are the evaluation set
    held_out_size = None  # (tasks.eval_size may ask for more: it gets what there is)
    max_tokens: int | None = None

    @property
    def name(self) -> str:
        return f"{PREFIX}:{self.module}"

    @property
    def description(self) -> str:
        return f"the verifiers environment {self.module} ({len(tasks_of(self.module))} tasks), played by its own Env"

    def _problem(self, index: int) -> Problem:
        data = tasks_of(self.module)[index].data
        env = {"name": "agent", "config": {"run": PROGRAM}}
        return Problem(id=f"{self.module}:{index}", prompt=_text(data.prompt), reference="", verifier=ENV_REWARD,
                       task=self.name, meta={"env": env, "verifiers": {"module": self.module, "index": index}})

    def _split(self) -> tuple[range, range]:
        n = len(tasks_of(self.module))
        held = min(self.held_out, n)
        return range(held), (range(held, n) if n > held else range(n))

    def eval_problems(self, n: int | None = None, data_dir: str | None = None) -> list[Problem]:
        held, _ = self._split()
        return [self._problem(i) for i in list(held)[:n]]

    def held_out_prompts(self) -> set[str]:
        return set()

    def train_problems(self, seed: int, data_dir: str | None = None) -> Iterator[Problem]:
        _, train = self._split()
        rng = random.Random(f"{self.module}:{seed}")
        while True:
            order = list(train)
            rng.shuffle(order)
            yield from (self._problem(i) for i in order)


def resolve(module: str) -> VerifiersTask:
    tasks_of(module)  # (an unknown module, or the package missing: one line now, not at the first step)
    return VerifiersTask(module)


def listing() -> dict[str, str]:
    return {f"{PREFIX}:MODULE": "a verifiers (v1) environment module: its Taskset's tasks, played by its Env"}
