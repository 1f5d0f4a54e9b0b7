"""Run a model-written Python function on input/output pairs, in the code sandbox (:mod:`.sandbox`).

The program only computes ``f(x)`` for the given inputs; the values come back as plain data and are compared
here with the expected outputs, so a program cannot declare itself correct.
"""

from __future__ import annotations

from rlreason.types import Problem, VerifyResult
from rlreason.verifiers.base import verifier
from rlreason.verifiers.sandbox import CandidateRaised, Sandbox, SandboxError

WALL_SECONDS = 5.0
CPU_SECONDS = 2
MEMORY_BYTES = 512 * 2**20


@verifier("python_io")
def python_io(completion: str, problem: Problem) -> VerifyResult:
    """Score 1.0 when ``f`` returns the expected value on every test input (reference: entry_point, tests)."""
    ref = problem.reference
    header = problem.prompt[problem.prompt.rfind("def "):]
    passed, failure = 0, None
    try:
        with Sandbox(header + completion, wall_s=WALL_SECONDS, cpu_s=CPU_SECONDS, memory_bytes=MEMORY_BYTES) as box:
            for x, want in ref["tests"]:
                try:
                    passed += box.call(ref["entry_point"], x) == want
                except CandidateRaised as e:
                    failure = failure or str(e)[:200]
    except SandboxError as e:  # failed to load, exited early, timed out: a wrong answer
        failure = str(e)[:300]
    details = {"passed": passed, "total": len(ref["tests"])}
    if failure:
        details["failure"] = failure
    return VerifyResult(float(passed == len(ref["tests"])), details)
