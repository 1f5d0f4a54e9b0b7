"""Environments for the tests of the episode loop, in a user's module (named ``plugins.test_envs:Class``)."""

from rlreason.envs import Environment, StepResult


class Echo(Environment):
    """Answers every turn with a fixed observation for ``turns`` turns, then ends with reward 1 (or never ends)."""

    stop = ("?",)

    def __init__(self, turns: int = 3, observation: str = " ok\n", messages: bool = False) -> None:
        self.turns, self.observation, self.messages, self.seen = turns, observation, messages, 0

    def reset(self, problem):
        return problem.prompt

    def step(self, action):
        self.seen += 1
        if self.seen >= self.turns:
            return StepResult(reward=1.0, done=True, solved=True)
        if self.messages:
            return StepResult(observation=[{"role": "user", "content": self.observation}])
        return StepResult(observation=self.observation, tool_calls=1)


class Raises(Environment):
    """Raises in ``reset`` or in ``step`` (at its ``at``-th turn) for problems whose reference is odd."""

    def __init__(self, where: str = "step", at: int = 2) -> None:
        self.where, self.at, self.seen = where, at, 0

    def reset(self, problem):
        self.odd = int(problem.reference) % 2 == 1
        if self.where == "reset" and self.odd:
            raise RuntimeError("reset failed on purpose")
        return problem.prompt

    def step(self, action):
        self.seen += 1
        if self.where == "step" and self.odd and self.seen >= self.at:
            raise ValueError("step failed on purpose")
        if self.seen >= 3:
            return StepResult(reward=1.0, done=True)
        return StepResult(observation=" go on\n")
