"""``guess``: find a hidden number by asking, told "higher" or "lower" after each guess; the shortest multi-turn
environment (plain text, for the embedded model).

A turn is a number followed by ``?`` (the stop string that ends the model's turn); the environment answers
`` higher``, `` lower`` or, when the guess is right, ends the episode with reward 1. A turn with no number is
answered `` say a number`` (counted as an error). Problems: a range ``lo..hi`` in the prompt (spans of 8, 16 or
32), the secret hidden in the reference.
"""

from __future__ import annotations

import random
import re

from rlreason.envs.base import ENV_REWARD, Environment, StepResult, environment
from rlreason.types import Problem

_NUMBER = re.compile(r"-?\d+")


@environment("guess")
class Guess(Environment):
    """Find a hidden number: guess (N?), told higher or lower; reward 1 when found."""

    stop = ("?",)
    max_tokens = 8  # per model turn: a number and a question mark

    def reset(self, problem: Problem) -> str:
        self.secret = int(problem.reference)
        return problem.prompt

    def step(self, action: str) -> StepResult:
        found = _NUMBER.findall(action)
        if not found:
            return StepResult(observation=" say a number\n", tool_calls=1, tool_errors=1)
        guess = int(found[-1])
        if guess == self.secret:
            return StepResult(reward=1.0, done=True, solved=True, tool_calls=1)
        return StepResult(observation=" higher\n" if guess < self.secret else " lower\n", tool_calls=1)

    @staticmethod
    def sample(rng: random.Random) -> tuple[Problem, list[tuple[str, bool]]]:
        """A problem, and a worked transcript (binary search) for pretraining the embedded model, as (text, the
        model's?) segments."""
        span = rng.choice((8, 16, 32))
        lo = rng.randrange(0, 100)
        hi = lo + span - 1
        secret = rng.randint(lo, hi)
        prompt = f"guess {lo}-{hi}:\n"
        problem = Problem(id=f"guess:{lo}-{hi}:{secret}", prompt=prompt, reference=str(secret),
                          verifier=ENV_REWARD, task="guess", meta={"env": {"name": "guess"}})
        turns, a, b = [], lo, hi
        while True:
            mid = (a + b) // 2
            turns.append((f"{mid}?", True))
            if mid == secret:
                return problem, turns
            turns.append((f" {'higher' if mid < secret else 'lower'}\n", False))
            a, b = (mid + 1, b) if mid < secret else (a, mid - 1)
