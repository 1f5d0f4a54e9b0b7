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
        assert "timed out" in results[2].error
        assert "VerifyResult" in results[3].error
        assert scorer.timeouts == 1
        # the pool was rebuilt after the hang and still works
        assert scorer.score([("#### 3", _problem("exact_answer"))])[0].score == 1.0
