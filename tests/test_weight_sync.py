"""After every weight push, vLLM's logprobs on sampled tokens equal the learner's (within 1e-3)."""

import pytest

from rlreason.batching import build_train_batch
from rlreason.config import load_config
from rlreason.learner.learner import Learner
from rlreason.rollout.engine import SamplingSpec
from rlreason.scoring import Scorer
from rlreason.tasks import get_task
from rlreason.types import ScoredGroup


@pytest.fixture(scope="module")
def learner():
    return Learner(load_config(None, ["train.lr=0.0003"]))


def _max_gap(engine, learner, groups) -> float:
    gaps = []
    for group in groups[:4]:
        for c in group[:2]:
            a = engine.sequence_logprobs(c.prompt_ids, c.completion_ids)
            b = learner.sequence_logprobs(c.prompt_ids, c.completion_ids)
            gaps += [abs(x - y) for x, y in zip(a, b)]
    return max(gaps)


def test_logprobs_match_after_every_push(engine, learner):
    problems = [p for p, _ in zip(get_task("arithmetic").train_problems(seed=5), range(16))]
    sampling = SamplingSpec(n=4, max_tokens=48, temperature=1.0)
    with Scorer(workers=1) as scorer:
        for push in range(1, 4):
            groups = engine.generate(problems, sampling)
            # the engine's own sampling logprobs agree with the learner before the update, too
            first = groups[0][0]
            assert max(abs(x - y) for x, y in zip(
                first.logprobs, learner.sequence_logprobs(first.prompt_ids, first.completion_ids))) < 1e-3
            results = scorer.score([(c.text, p) for p, g in zip(problems, groups) for c in g])
            it = iter(results)
            scored = [ScoredGroup(p, g, [next(it) for _ in g]) for p, g in zip(problems, groups)]
            stats = learner.train_step(build_train_batch(scored, learner.algo))
            assert stats.metrics["grad_norm"] > 0
            seconds = engine.load_weights(learner.export_weights())
            assert engine.version == push == learner.version and seconds < 5
            assert _max_gap(engine, learner, groups) < 1e-3
            assert all(c.policy_version == push - 1 for c in groups[0])
