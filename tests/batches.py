"""Hand-made scored groups on the embedded model's tokenizer: a correct and a wrong completion per prompt."""

import itertools

from rlreason.tasks import get_task
from rlreason.types import Completion, ScoredGroup, VerifyResult


def good_and_bad_groups(tokenizer, n: int = 4, baseline: float | None = None) -> list[ScoredGroup]:
    groups = []
    for problem, solution in itertools.islice(get_task("arithmetic").examples(seed=3), n):
        prompt = tokenizer.encode(problem.prompt)
        good, bad = tokenizer.encode(solution), tokenizer.encode("#### 0")
        comps = [Completion(problem.id, prompt, ids, [-1.0] * len(ids), "stop", 0, "") for ids in (good, bad)]
        groups.append(ScoredGroup(problem, comps, [VerifyResult(1.0), VerifyResult(0.0)],
                                  baseline=None if baseline is None else VerifyResult(baseline)))
    return groups


def assert_same_step(got, expected, name: str = "") -> None:
    """Two updates are the same step: equal within float noise (2e-5) but for at most 0.1% of the elements. AdamW
    divides each gradient by its own running scale, so an element whose gradient is ~0 turns summation-order noise
    into an update of up to lr; a wrong update (a missing row, a wrong scale) moves most elements by ~lr instead."""
    assert got.shape == expected.shape, name
    gap = (got.float() - expected.float()).abs()
    far = int((gap > 2e-5).sum())
    assert far <= 1e-3 * gap.numel(), f"{name}: {far} of {gap.numel()} elements differ (largest {gap.max():.2e})"
