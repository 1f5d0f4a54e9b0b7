"""Verifiers that misbehave, to check that scoring contains them. Registered on import."""

import time

from rlreason.types import VerifyResult
from rlreason.verifiers import verifier


@verifier("test_raises")
def raises(completion, problem):
    raise RuntimeError("boom")


@verifier("test_hangs")
def hangs(completion, problem):
    time.sleep(60)
    return VerifyResult(1.0)


@verifier("test_hangs_blocking_timers")
def hangs_blocking_timers(completion, problem):
    """Hangs where no per-call timer can reach it (as a verifier stuck in C code would)."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(60)
    return VerifyResult(1.0)


@verifier("test_garbage")
def garbage(completion, problem):
    return 1.0


def length_is_reference(completion, problem):
    """Score 1 when the completion has exactly ``reference`` characters (a custom verifier by module:name)."""
    return VerifyResult(float(len(completion) == int(problem.reference)))
