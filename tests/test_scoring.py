import time

from rlreason.scoring import Scorer
from rlreason.types import Problem


def _problem(verifier: str) -> Problem:
    return Problem(id=verifier, prompt="", reference="3", verifier=verifier)


def test_failing_verifiers_score_zero_and_never_crash_the_run():
    with Scorer(workers=2, timeout_s=1.0) as scorer:
        start = time.monotonic()
        results = scorer.score([
            ("#### 3", _problem("exact_answer")),
            ("x", _problem("plugins.flaky_verifiers:raises")),
            ("x", _problem("plugins.flaky_verifiers:hangs")),
            ("x", _problem("plugins.flaky_verifiers:garbage")),
            ("abc", _problem("plugins.flaky_verifiers:length_is_reference")),
        ])
        assert time.monotonic() - start < 10
        assert [r.score for r in results] == [1.0, 0.0, 0.0, 0.0, 1.0]
        assert "boom" in results[1].error
        assert "timed out after 1.0s" in results[2].error  # the per-call timer, no pool restart
        assert "VerifyResult" in results[3].error
        assert scorer.timeouts == 0


def test_each_call_has_its_own_deadline():
    with Scorer(workers=2, timeout_s=0.5) as scorer:
        start = time.monotonic()
        results = scorer.score([("x", _problem("plugins.flaky_verifiers:hangs"))] * 6
                               + [("#### 3", _problem("exact_answer"))])
        assert time.monotonic() - start < 4  # 6 hangs, 2 at a time, 0.5 s each (+ slack)
        assert [r.score for r in results] == [0.0] * 6 + [1.0]


def test_a_verifier_that_blocks_the_timer_is_stopped_by_the_batch_deadline_and_the_pool_rebuilt():
    with Scorer(workers=2, timeout_s=0.5) as scorer:
        results = scorer.score([("x", _problem("plugins.flaky_verifiers:hangs_blocking_timers")),
                                ("#### 3", _problem("exact_answer"))])
        assert "timed out" in results[0].error and results[1].score == 1.0
        assert scorer.timeouts == 1
        assert scorer.score([("#### 3", _problem("exact_answer"))])[0].score == 1.0


def test_scoring_processes_start_in_the_background_without_torch():
    """They start while the run's engines do (the constructor does not wait) and import the verifiers and tasks
    only: torch costs each process 2 s of a 2-core machine's start-up."""
    from rlreason.tasks import get_task

    start = time.perf_counter()
    with Scorer(workers=2) as scorer:
        assert time.perf_counter() - start < 0.5
        assert scorer.score([("4", get_task("arithmetic").eval_problems(1)[0])])
        assert scorer._pool.submit(eval, "'torch' in __import__('sys').modules").result() is False
        assert scorer._pool.submit(eval, "'rlreason.tasks' in __import__('sys').modules").result() is True
