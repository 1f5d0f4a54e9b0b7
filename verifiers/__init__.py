"""Verifiers: pure CPU callables ``verify(completion, problem) -> VerifyResult``, registered by name.

A verifier has no timeout of its own and may raise: the scoring runner (``rlreason.scoring``) runs it in a worker
process with a hard deadline and turns any failure into score 0 with the error recorded. Add your own with::

    from rlreason.verifiers import verifier
    @verifier("my_check")
    def my_check(completion, problem):
        return VerifyResult(score=float(problem.reference in completion))
"""

from __future__ import annotations

from collections.abc import Callable

from rlreason.registry import Registry
from rlreason.types import Problem, VerifyResult

VerifyFn = Callable[[str, Problem], VerifyResult]
VERIFIERS: Registry[VerifyFn] = Registry("verifier")


def verifier(name: str) -> Callable[[VerifyFn], VerifyFn]:
    """Decorator: register ``fn`` under ``name``."""
    return VERIFIERS.register(name)


def get_verifier(name: str) -> VerifyFn:
    return VERIFIERS.get(name)


from rlreason.verifiers import answers, code, math_equiv, python_io, shaping  # noqa: E402,F401  (built-ins)
