"""Controller pieces that need no cluster: the problem stream and ScaleRL's prompt retirement."""

import itertools

from rlreason.config import load_config
from rlreason.controller import Context, problem_stream, retire_solved
from rlreason.types import Problem, ScoredGroup, VerifyResult


def _group(pid, scores):
    return ScoredGroup(Problem(pid, "", "", "exact_answer"), [None] * len(scores), [VerifyResult(s) for s in scores])


def test_solved_prompts_leave_the_pool_and_the_stream_skips_them():
    cfg = load_config(None, ["tasks.retire_solved_at=0.9"])
    ctx = Context(cfg, [], None, None)
    groups = [_group("a", [1.0] * 10), _group("b", [1.0] * 8 + [0.0] * 2), _group("c", [1.0] * 9 + [0.0])]
    assert retire_solved(ctx, groups) == 2 and ctx.retired == {"a", "c"}  # 0.8 stays, 0.9 and 1.0 leave

    first = list(itertools.islice(problem_stream(cfg, set()), 200))
    common = [p.id for p in first]
    retired = set(common[:50])
    again = list(itertools.islice(problem_stream(cfg, retired), 150))
    assert not retired & {p.id for p in again}


def test_retirement_is_off_by_default():
    ctx = Context(load_config(), [], None, None)
    assert retire_solved(ctx, [_group("a", [1.0] * 4)]) == 0 and not ctx.retired
