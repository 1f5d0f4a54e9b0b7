"""Per-problem evaluation metrics over n sampled completions, and their mean with a 95% interval over problems.

- ``pass@k``: the unbiased estimator of Chen et al. 2021 (arXiv 2107.03374), 1 - C(n-c, k) / C(n, k) for c correct
  of n, computed as a stable product. ``pass@1`` is the mean accuracy.
- ``maj@k``: majority vote over the first k completions. A completion votes with the answer its verifier extracted
  (``details["extracted"]``; none when extraction failed); answers the verifier calls equivalent
  (``same_answer``, e.g. math-verify for ``math_answer``) vote together. Ties go to the answer seen first, so the
  result is deterministic. The winner scores its first member's verdict. Undefined (None) for a verifier that
  extracts no answer (code).
- ``mean@k``: mean score of the first k completions (scores can be partial, e.g. a share of unit tests).
- ``<protocol>_pass@1``: pass@1 under each other answer protocol the verifier reports (``VerifyResult.protocols``,
  e.g. ``flexible_pass@1``: the last number of the text, lm-eval's flexible-extract), beside the strict one.
Intervals: mean +- 1.96 standard errors over problems (the problems are the sample).
"""

from __future__ import annotations

import math
import signal
import statistics
import threading
from collections.abc import Callable, Sequence

from rlreason.types import ScoredGroup, VerifyResult

SameAnswer = Callable[[str, str], bool]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k completions drawn without replacement from n (c correct) is correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def vote_answer(result: VerifyResult) -> str | None:
    """The answer a completion votes for: what its verifier extracted, unless extraction failed or was refused."""
    answer = result.details.get("extracted")
    if result.error is not None or answer is None or result.details.get("reason"):
        return None
    return str(answer).strip()


def majority_vote(results: Sequence[VerifyResult], same: SameAnswer | None = None) -> VerifyResult | None:
    """The first member of the largest group of equivalent answers (ties: the group seen first); None when no
    completion has an answer."""
    clusters: list[list[tuple[str, VerifyResult]]] = []
    for result in results:
        answer = vote_answer(result)
        if answer is None:
            continue
        for cluster in clusters:
            head = cluster[0][0]
            if answer == head or (same is not None and _safe_same(same, answer, head)):
                cluster.append((answer, result))
                break
        else:
            clusters.append([(answer, result)])
    if not clusters:
        return None
    best = max(clusters, key=len)  # max keeps the first of equal lengths: the earliest-seen answer wins ties
    return best[0][1]


SAME_TIMEOUT_S = 2.0  # per comparison; math-verify's sympy can hang on adversarial answers


class _Timeout(Exception):
    pass


def _safe_same(same: SameAnswer, a: str, b: str) -> bool:
    """``same(a, b)``; False when it raises or (in the main thread, where a timer signal can interrupt it) takes
    longer than ``SAME_TIMEOUT_S``: an answer that cannot be compared does not join another's vote."""
    bounded = threading.current_thread() is threading.main_thread()
    if bounded:
        def _stop(signum, frame):
            raise _Timeout()

        previous = signal.signal(signal.SIGALRM, _stop)
        signal.setitimer(signal.ITIMER_REAL, SAME_TIMEOUT_S)
    try:
        return bool(same(a, b))
    except Exception:  # noqa: BLE001 - _Timeout included
        return False
    finally:
        if bounded:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def problem_metrics(group: ScoredGroup, ks: Sequence[int], same: SameAnswer | None = None,
                    votes: bool = True) -> dict[str, float | None]:
    """pass@k, maj@k and mean@k for one problem (k above the number of completions is skipped), plus length,
    truncation and verifier-error shares."""
    results, n = group.results, len(group.results)
    c = sum(r.correct for r in results)
    out: dict[str, float | None] = {}
    for k in ks:
        if k > n:
            continue
        out[f"pass@{k}"] = pass_at_k(n, c, k)
        out[f"mean@{k}"] = statistics.fmean(r.score for r in results[:k])
        if votes:
            winner = majority_vote(results[:k], same)
            out[f"maj@{k}"] = 0.0 if winner is None else float(winner.correct)
    for protocol in dict.fromkeys(p for r in results for p in r.protocols):
        out[f"{protocol}_pass@1"] = statistics.fmean(bool(r.protocols.get(protocol)) for r in results)
    out["completion_len"] = statistics.fmean(x.sampled for x in group.completions)
    out["truncated_frac"] = statistics.fmean(x.finish_reason == "length" for x in group.completions)
    out["looping_frac"] = statistics.fmean(x.finish_reason == "length" and loops(x.completion_ids)
                                           for x in group.completions)
    out["verifier_error_frac"] = statistics.fmean(r.error is not None for r in results)
    return out


def loops(ids: Sequence[int], n: int = 8, distinct_below: float = 0.5) -> bool:
    """Whether a completion's second half repeats itself: under half of its token ``n``-grams are distinct (a small
    model caught in a loop under greedy decoding, which no longer generation limit would end)."""
    tail = ids[len(ids) // 2:]
    grams = [tuple(tail[i: i + n]) for i in range(len(tail) - n + 1)]
    return len(grams) >= 2 * n and len(set(grams)) < distinct_below * len(grams)


def extracts_answers(groups: Sequence[ScoredGroup]) -> bool:
    """Whether the verifier reports extracted answers at all (maj@k is meaningless for, say, unit tests)."""
    return any("extracted" in r.details for g in groups for r in g.results)


def summarize(rows: Sequence[dict[str, float | None]]) -> dict[str, dict[str, float]]:
    """Per metric: mean, 95% half-width over problems, and the number of problems."""
    out = {}
    for key in dict.fromkeys(k for row in rows for k in row):
        values = [row[key] for row in rows if row.get(key) is not None]
        if not values:
            continue
        half = 1.96 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
        out[key] = {"mean": statistics.fmean(values), "ci95": half, "n": len(values)}
    return out


def group_summary(groups: Sequence[ScoredGroup], ks: Sequence[int], same: SameAnswer | None) -> dict:
    """``summarize`` over the per-problem metrics of ``groups``."""
    votes = extracts_answers(groups)
    return summarize([problem_metrics(g, ks, same, votes) for g in groups])
