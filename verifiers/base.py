"""The verifier registry: ``verifier(name)`` registers a function, ``get_verifier(name)`` finds one (built-in,
``module:function``, ``trl:module:function`` or an entry point). Re-exported by ``rlreason.verifiers``."""

from __future__ import annotations

from collections.abc import Callable

from rlreason.registry import Registry
from rlreason.types import ENV_REWARD, Problem, VerifyResult

VerifyFn = Callable[[str, Problem], VerifyResult]


def _from_trl(fn) -> VerifyFn:
    from rlreason.verifiers.trl_functions import as_verifier

    return as_verifier(fn)


VERIFIERS: Registry[VerifyFn] = Registry("verifier", schemes={"trl": _from_trl})  # trl:module:function


def verifier(name: str, same_answer: Callable[[str, str], bool] | None = None) -> Callable[[VerifyFn], VerifyFn]:
    """Decorator: register ``fn`` under ``name``. ``same_answer(a, b)``: whether two answers the verifier extracted
    (``details["extracted"]``) mean the same, for majority voting (maj@k); without it equal text votes together."""
    def register(fn: VerifyFn) -> VerifyFn:
        fn.same_answer = same_answer
        return VERIFIERS.register(name)(fn)

    return register


def same_answer_of(name: str) -> Callable[[str, str], bool] | None:
    """The verifier's answer equivalence for voting (None: exact text; an environment's reward: no answers)."""
    if name == ENV_REWARD:
        return None
    return getattr(get_verifier(name), "same_answer", None)


def get_verifier(name: str) -> VerifyFn:
    return VERIFIERS.get(name)
