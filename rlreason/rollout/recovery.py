"""Calls to the rollout workers that survive a worker's death.

A rollout worker that dies (killed, out of memory, a crash in vLLM) is restarted by Ray (the actors are created
with ``max_restarts=rollout.max_restarts``), given the current weights and the sampling seed of the step, and the
call it lost is issued again: the step completes as if nothing happened (with the same seed and weights, a
re-issued generation samples what the lost one would have). A worker that dies more often than that is gone for
good: ``WorkerLost`` stops the run with a message, the last checkpoint intact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class WorkerLost(RuntimeError):
    """A rollout worker died more often than ``rollout.max_restarts`` allows."""


class LearnerLost(RuntimeError):
    """The learner process died; the run cannot go on (the last checkpoint is intact)."""


@dataclass
class Pending:
    """Calls sent to the workers, not yet collected: ``refs`` maps each ObjectRef to its worker's index."""

    calls: dict[int, Callable[[Any], Any]]
    refs: dict = field(default_factory=dict)


def issue(ctx, calls: dict[int, Callable[[Any], Any]]) -> Pending:
    """Send ``calls[i](ctx.workers[i])`` (each returns an ObjectRef) to every worker ``i``; returns at once."""
    return Pending(calls, {calls[i](ctx.workers[i]): i for i in calls})


def collect(ctx, pending: Pending) -> dict[int, Any]:
    """The results of ``pending`` by worker index. A worker that died meanwhile is revived and its call sent
    again."""
    import ray

    done: dict[int, Any] = {}
    while pending.refs:
        ready, _ = ray.wait(list(pending.refs), num_returns=1)
        i = pending.refs.pop(ready[0])
        try:
            done[i] = ray.get(ready[0])
        except ray.exceptions.RayActorError as e:
            revive(ctx, i, e)
            pending.refs[pending.calls[i](ctx.workers[i])] = i
    return done


def on_workers(ctx, calls: dict[int, Callable[[Any], Any]]) -> dict[int, Any]:
    """``issue`` then ``collect``: the calls run in parallel, their results by worker index."""
    return collect(ctx, issue(ctx, calls))


def on_worker(ctx, i: int, call: Callable[[Any], Any]) -> Any:
    return on_workers(ctx, {i: call})[i]


def revive(ctx, i: int, error: Exception) -> None:
    """Wait for Ray to restart worker ``i``, then give it the learner's current weights and worker ``i``'s last
    sampling seed. ``WorkerLost`` when Ray will not restart it any more."""
    import ray

    worker, limit = ctx.workers[i], ctx.cfg.rollout.max_restarts
    cause = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    try:
        _wait_restarted(worker)
    except (ray.exceptions.ActorDiedError, ray.exceptions.GetTimeoutError) as e:
        raise WorkerLost(f"rollout worker {i} died and was not restarted (rollout.max_restarts is {limit}, "
                         f"{ctx.worker_restarts} restart(s) so far; last error: {cause}); the last checkpoint is "
                         "intact: find the cause (memory? lower rollout.kv_cache_gib or rollout.workers) and "
                         "continue with --resume") from e
    ctx.worker_restarts += 1
    if ctx.learner is not None:  # (an evaluation has none: the restarted engine serves what it started with)
        _learner_alive(ctx)
        ray.get(worker.load_weights.remote(ctx.learner.export_weights.remote()))
    if i in ctx.seeds:
        ray.get(worker.reseed.remote(ctx.seeds[i]))


RESTART_TIMEOUT_S = 600.0  # an engine's start (model load, KV cache) on a busy machine


def _wait_restarted(worker) -> None:
    """Return once ``worker`` answers again. ``ActorDiedError``: Ray will not restart it; ``GetTimeoutError``:
    not back within ``RESTART_TIMEOUT_S``. (Until Ray has noticed the death, calls fail as unavailable.)"""
    import ray

    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while True:
        try:
            ray.get(worker.get_version.remote(), timeout=max(deadline - time.monotonic(), 0.1))
            return
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise ray.exceptions.GetTimeoutError("the restarted worker did not answer") from None
            time.sleep(0.5)


def _learner_alive(ctx) -> None:
    import ray

    try:
        ray.get(ctx.learner.get_version.remote(), timeout=RESTART_TIMEOUT_S)
    except ray.exceptions.RayActorError as e:
        raise learner_lost(e) from e


def learner_lost(error: Exception) -> LearnerLost:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return LearnerLost(f"the learner process died ({first}); the run stops here; the last checkpoint is intact: "
                       "continue with --resume")
