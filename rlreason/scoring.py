"""Run verifiers over completions in worker processes with hard deadlines; failures score 0, never crash.

Each call has its own deadline (``timeout_s``, a real-time interval timer in the worker's main thread that raises
out of Python code); a verifier stuck in C code is caught by the batch deadline, which tears the pool down and
rebuilds it. A verifier that raises, times out or returns something other than a ``VerifyResult`` gives score 0
with the error recorded. Workers resolve verifiers by name (only names and picklable records cross the process
boundary), after ``load_plugins()``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

from rlreason.registry import SCORING_GROUPS, load_plugins
from rlreason.types import ENV_REWARD, Problem, VerifyResult


class VerifierTimeout(BaseException):
    """Raised by the per-call timer; a BaseException so that a verifier's ``except Exception`` cannot swallow it."""


def _on_alarm(signum, frame):
    raise VerifierTimeout


def _verify_one(verifier: str, completion: str, problem: Problem, timeout_s: float | None = None) -> VerifyResult:
    from rlreason.verifiers import get_verifier

    if timeout_s:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        result = get_verifier(verifier)(completion, problem)
    except VerifierTimeout:
        return VerifyResult(0.0, {}, error=f"verifier timed out after {timeout_s}s")
    except Exception as e:  # a verifier never crashes a run
        return VerifyResult(0.0, {}, error=f"{type(e).__name__}: {e}"[:300])
    finally:
        if timeout_s:
            signal.setitimer(signal.ITIMER_REAL, 0)
    if not isinstance(result, VerifyResult):
        return VerifyResult(0.0, {}, error=f"verifier returned {type(result).__name__}, not VerifyResult")
    return result


def _verify_chunk(chunk: list[tuple[str, Problem]], timeout_s: float | None) -> list[VerifyResult]:
    return [_verify_one(p.verifier, text, p, timeout_s) for text, p in chunk]


def _start_worker(groups) -> None:
    """A scorer process: it dies with the process that started it (killed or not), then loads the plugins."""
    from rlreason.process_info import die_with_parent

    die_with_parent()
    load_plugins(groups)


class Scorer:
    """A bounded pool of verifier processes. Use as a context manager or call ``close()``."""

    def __init__(self, workers: int | None = None, timeout_s: float = 15.0) -> None:
        """``workers``: processes (default: one per core, so throughput scales with the machine)."""
        self.workers, self.timeout_s = workers or os.cpu_count() or 1, timeout_s
        self.timeouts = 0
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        """A pool whose workers start now, in the background (a run's engines start meanwhile); ``score`` waits for
        them before its clock starts: deadlines count verifier time, not the workers' start-up (imports take
        seconds)."""
        pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_start_worker,
                                   initargs=(SCORING_GROUPS,))
        self._starting = [pool.submit(load_plugins, SCORING_GROUPS) for _ in range(self.workers)]
        return pool

    def score(self, items: list[tuple[str, Problem]]) -> list[VerifyResult]:
        """``items``: (completion text, problem) pairs -> one result each, in order. Items travel in small chunks
        (up to 16, at least 4 chunks per worker) to save inter-process overhead; each call keeps its own timer."""
        wait(self._starting)
        size = max(1, min(16, len(items) // (4 * self.workers)))
        chunks = [items[i: i + size] for i in range(0, len(items), size)]
        futures = [self._pool.submit(_verify_chunk, chunk, self.timeout_s) for chunk in chunks]
        # Worst case without a hang: every item takes the full timeout, chunks run ``workers`` at a time.
        deadline = time.monotonic() + (self.timeout_s + 1.0) * size * -(-len(chunks) // self.workers)
        wait(futures, timeout=max(0.0, deadline - time.monotonic()), return_when=FIRST_EXCEPTION)
        results, hung = [], False
        for f, chunk in zip(futures, chunks):
            if f.done() and f.exception() is None:
                results.extend(f.result())
            else:
                hung |= not f.done()
                error = "verifier timed out" if not f.done() else f"verifier process failed: {f.exception()}"
                results.extend(VerifyResult(0.0, {}, error=error) for _ in chunk)
        if hung:
            self.timeouts += 1
            self._restart()
        return results

    def _restart(self) -> None:
        for proc in list(getattr(self._pool, "_processes", {}).values()):
            proc.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def score_composite(scorer: Scorer, items: list[tuple[str, Problem]], terms) -> list[VerifyResult]:
    """Sum of ``weight * score`` over ``terms`` (each with ``verifier``, ``weight``; ``task`` is the problem's own
    verifier). The first term's verdict is the result's ``passed`` (accuracy); each term's score is in
    ``details["components"]``; the first error, if any, is kept."""
    from dataclasses import replace

    per_term = []
    for term in terms:
        scored = [(text, p if term.verifier == "task" else replace(p, verifier=term.verifier)) for text, p in items]
        per_term.append(scorer.score(scored))
    out = []
    for i in range(len(items)):
        parts = [results[i] for results in per_term]
        names = [t.verifier if t.verifier != "task" else "task" for t in terms]
        total = sum(t.weight * r.score for t, r in zip(terms, parts))
        error = next((r.error for r in parts if r.error), None)
        out.append(VerifyResult(total, {**parts[0].details, "components": dict(zip(names, (r.score for r in parts)))},
                                error=error, passed=parts[0].correct, protocols=parts[0].protocols))
    return out


class EpisodeRewards:
    """A scorer for one batch of completions (``score`` takes their items in order): problems scored by their
    environment (verifier ``environment``) get the episode's reward; a failed episode (its environment raised) gets
    an error result; the rest go to the verifier runner."""

    def __init__(self, scorer: Scorer, completions: list) -> None:
        self.scorer, self.completions = scorer, completions

    def score(self, items: list[tuple[str, Problem]]) -> list[VerifyResult]:
        out: list[VerifyResult | None] = [None] * len(items)
        rest = []
        for i, ((_, problem), completion) in enumerate(zip(items, self.completions)):
            episode = completion.episode
            if episode is not None and episode.failed:
                out[i] = VerifyResult(0.0, {"reason": "episode failed"}, error=f"environment: {episode.error}")
            elif problem.verifier == ENV_REWARD or (episode is not None and episode.scored):
                out[i] = episode_result(episode)
            else:
                rest.append(i)
        for i, result in zip(rest, self.scorer.score([items[i] for i in rest]) if rest else []):
            out[i] = result
        return out


def episode_result(episode) -> VerifyResult:
    """The environment's reward as a verifier result; correct when the environment says solved (else reward >= 1)."""
    if episode is None:
        return VerifyResult(0.0, {}, error="verifier 'environment' on a problem played in no environment")
    details = {"env": episode.env, "reason": episode.reason, "turns": sum(t.role == "assistant" for t in episode.turns)}
    reward = 0.0 if episode.reward is None else float(episode.reward)
    return VerifyResult(reward, details, passed=episode.solved if episode.solved is not None else reward >= 1.0)
