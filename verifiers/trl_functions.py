"""A TRL-style reward function ``f(prompts, completions, **kwargs) -> list[float | None]`` as a verifier: what the
``trl:module:function`` verifier names resolve to (``rlreason.integrations.trl`` has the other direction and the
full contract)."""

from __future__ import annotations

from collections.abc import Callable

from rlreason.types import Problem, VerifyResult


def as_verifier(fn: Callable[..., list]) -> Callable[[str, Problem], VerifyResult]:
    """A TRL-style reward function as a verifier (see the module docstring)."""
    def verify(completion: str, problem: Problem) -> VerifyResult:
        extra = {k: [v] for k, v in problem.meta.items() if k != "messages"}
        extra.update(reference=[problem.reference], solution=[problem.reference])  # TRL's own functions: solution
        try:
            scores = fn(prompts=[problem.prompt], completions=[completion], **extra)
        except (TypeError, KeyError, IndexError):  # a function written for TRL's conversational format
            scores = fn(prompts=[[{"role": "user", "content": problem.prompt}]],
                        completions=[[{"role": "assistant", "content": completion}]], **extra)
        if len(scores) != 1:
            raise ValueError(f"TRL reward function {fn.__name__} returned {len(scores)} scores for one completion")
        score = scores[0]
        if score is None:
            return VerifyResult(0.0, {"reason": "the reward function returned None"})
        return VerifyResult(float(score), {"trl_reward": float(score)})

    verify.__doc__ = f"TRL reward function {getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')}"
    return verify
