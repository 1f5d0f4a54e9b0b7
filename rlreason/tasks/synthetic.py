"""Synthetic tasks for the embedded tiny model: a generator ``sample(rng) -> (problem, worked solution)`` gives an
endless training stream, a fixed held-out set (the same for every run) and few-shot examples."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rlreason.tasks.registry import TASKS
from rlreason.types import Problem

# Seeds for held-out sets are fixed by the task, not the run, so every run evaluates on the same problems.
_EVAL_SEED = 1_000_003
_FEWSHOT_SEED = 2_000_003  # few-shot examples: the same for every run


@dataclass(frozen=True)
class SyntheticTask:
    """A task backed by ``sample(rng) -> (problem, reference solution text)``."""

    name: str
    description: str
    sample: Callable[[random.Random], tuple[Problem, str]]

    held_out_size: int = 200  # the first this-many distinct eval problems are never trained on
    also_exclude: tuple[str, ...] = ()  # tasks whose held-out prompts this task's training stream also avoids
    max_tokens: int = 48  # the usual generation budget: worked solutions are a few lines
    has_fewshot: bool = True

    def eval_problems(self, n: int | None = None, data_dir: str | None = None) -> list[Problem]:
        """The first ``n`` problems of the task's fixed held-out set (``n <= held_out_size``; None: all)."""
        n = self.held_out_size if n is None else n
        if n > self.held_out_size:
            raise ValueError(f"task {self.name!r} holds out {self.held_out_size} problems; asked for {n}")
        rng, seen, out = random.Random(f"{self.name}:{_EVAL_SEED}"), set(), []
        for _ in range(100 * n):
            problem, _ = self.sample(rng)
            if problem.prompt not in seen:
                seen.add(problem.prompt)
                out.append(problem)
            if len(out) == n:
                return out
        raise ValueError(f"task {self.name!r} has fewer than {n} distinct problems")

    def held_out_prompts(self) -> set[str]:
        return {p.prompt for p in self.eval_problems(self.held_out_size)}

    def examples(self, seed: int) -> Iterator[tuple[Problem, str]]:
        """Endless (problem, solution) training pairs from ``seed``; never a held-out prompt."""
        exclude = self.held_out_prompts().union(*(TASKS.get(t).held_out_prompts() for t in self.also_exclude))
        rng = random.Random(f"{self.name}:{seed}")
        while True:
            problem, solution = self.sample(rng)
            if problem.prompt not in exclude:
                yield problem, solution

    def train_problems(self, seed: int, data_dir: str | None = None) -> Iterator[Problem]:
        return (problem for problem, _ in self.examples(seed))

    def fewshot_examples(self, k: int, data_dir: str | None = None) -> list[tuple[str, str]]:
        """``k`` worked (prompt, solution) examples from the training stream (never a held-out prompt)."""
        return [(p.prompt, s) for (p, s), _ in zip(self.examples(_FEWSHOT_SEED), range(k))]
