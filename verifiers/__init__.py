"""Verifiers: pure CPU callables ``verify(completion, problem) -> VerifyResult``, registered by name.

A verifier has no timeout of its own and may raise: the scoring runner (``rlreason.scoring``) runs it in a worker
process with a hard deadline and turns any failure into score 0 with the error recorded. Add your own with::

    from rlreason.verifiers import verifier
    @verifier("my_check")
    def my_check(completion, problem):
        return VerifyResult(score=float(problem.reference in completion))
"""

if __name__ == "verifiers":  # this folder imported as a top-level package: the repository's root is on sys.path
    from rlreason.registry import hand_over as _hand_over

    _hand_over(__name__, __file__)  # the installed PyPI ``verifiers`` takes the name (or an ImportError says why)
else:
    from rlreason.verifiers.base import VERIFIERS, VerifyFn, get_verifier, same_answer_of, verifier  # noqa: F401
    from rlreason.verifiers import answers, code, math_equiv, python_io, reasoning_gym, shaping  # noqa: F401  (built-ins)
