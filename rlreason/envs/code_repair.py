"""``code_repair``: write a program, read what its tests say, try again. Each model turn is a whole attempt; the
data task's own verifier runs it against the tests (in the code sandbox); when they do not all pass, the next
user turn reports how many passed and the first failure, up to ``env.max_turns`` attempts. The reward is the last
attempt's score (``env.discount`` per extra attempt, if set), so a program right at once is worth the most.

For code tasks: ``{env: code_repair, data: mbpp}``, ``humaneval``, or the embedded model's ``programs``.
"""

from __future__ import annotations

from rlreason.envs.base import Environment, StepResult, environment
from rlreason.types import Problem


@environment("code_repair")
class CodeRepair(Environment):
    """Code with test feedback: each attempt runs against the tests; failures come back until they pass."""

    def reset(self, problem: Problem) -> str:
        self.problem = problem
        return problem.prompt

    def step(self, action: str) -> StepResult:
        from rlreason.verifiers import get_verifier

        result = get_verifier(self.problem.verifier)(action, self.problem)
        if result.error is None and result.score >= 1.0:
            return StepResult(reward=result.score, done=True, solved=True)
        details = result.details
        passed, total = details.get("passed"), details.get("total")
        counts = f"{passed} of {total} tests passed" if total else "the tests did not pass"
        failure = details.get("failure") or result.error
        feedback = f"{counts}" + (f"; first failure: {str(failure).splitlines()[0][:200]}" if failure else "")
        return StepResult(observation=f"\n# {feedback}. Try again.\n{self.problem.prompt}", reward=result.score,
                          solved=False, tool_errors=1)
