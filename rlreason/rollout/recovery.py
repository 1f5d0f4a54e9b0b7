"""Calls to the rollout workers that survive a worker's death.

A rollout worker that dies (killed, out of memory, a crash in vLLM) is restarted by Ray (the actors are created
with ``max_restarts=rollout.max_restarts``), given the learner's current weights and its sampling seed, and the
calls it lost are issued again (a lost weight push is not: the revived worker already has newer weights). A
restarted engine refuses to generate until it has been given weights (``EngineRestarted``), so a worker that died
while idle is caught at its next call, not trained on with the weights it started with. In sync mode a re-issued
generation samples with the same seed and weights as the lost one. A worker that dies more often than allowed is
gone for good: ``WorkerLost`` stops the run with a message, the last checkpoint intact.
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


class PushLost(RuntimeError):
    """A member of a collective weight push failed; the push cannot finish (the run stops, in seconds)."""


class EngineRestarted(RuntimeError):
    """A restarted rollout engine was asked to generate before it was given the run's weights."""


@dataclass
class Pending:
    """Calls sent to the workers, not yet collected. ``refs`` maps each ObjectRef to (worker index, the worker's
    life when sent); ``reissue``: send a lost call again (not for weight pushes)."""

    calls: dict[int, Callable[[Any], Any]]
    reissue: bool = True
    refs: dict = field(default_factory=dict)


def issue(ctx, calls: dict[int, Callable[[Any], Any]], reissue: bool = True) -> Pending:
    """Send ``calls[i](ctx.workers[i])`` (each returns an ObjectRef) to every worker ``i``; returns at once. The
    calls are kept only to be sent again: a weight push's (``reissue=False``) would keep its weights in Ray's object
    store until collected, long after the engines loaded them (Ray keeps an argument alive while its task runs)."""
    refs = {calls[i](ctx.workers[i]): (i, ctx.lives.get(i, 0)) for i in calls}
    return Pending(calls if reissue else {}, reissue, refs)


def collect(ctx, pending: Pending) -> dict[int, Any]:
    """The results of ``pending`` by worker index (a lost weight push has none). A worker that died meanwhile is
    revived once, however many of its calls were lost, and its lost calls are sent again."""
    import ray

    done: dict[int, Any] = {}
    while pending.refs:
        ready, _ = ray.wait(list(pending.refs), num_returns=1)
        i, life = pending.refs.pop(ready[0])
        try:
            done[i] = ray.get(ready[0])
        except (ray.exceptions.RayActorError, EngineRestarted) as e:
            if_learner_lost(ctx, e)
            if life == ctx.lives.get(i, 0):  # not revived since this call was sent
                revive(ctx, i, e)
            if pending.reissue:
                pending.refs[pending.calls[i](ctx.workers[i])] = (i, ctx.lives.get(i, 0))
    return done


def on_workers(ctx, calls: dict[int, Callable[[Any], Any]], reissue: bool = True) -> dict[int, Any]:
    """``issue`` then ``collect``: the calls run in parallel, their results by worker index."""
    return collect(ctx, issue(ctx, calls, reissue))


def on_worker(ctx, i: int, call: Callable[[Any], Any]) -> Any:
    return on_workers(ctx, {i: call})[i]


def revive(ctx, i: int, error: Exception) -> None:
    """Wait for Ray to restart worker ``i``, then give it the learner's current weights and worker ``i``'s last
    sampling seed (again if it dies meanwhile). ``WorkerLost`` when Ray will not restart it any more."""
    import ray

    worker, limit = ctx.workers[i], ctx.cfg.rollout.max_restarts
    while True:
        cause = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        try:
            _wait_restarted(worker)
        except (ray.exceptions.ActorDiedError, ray.exceptions.GetTimeoutError) as e:
            raise WorkerLost(f"rollout worker {i} died and was not restarted (rollout.max_restarts is {limit}, "
                             f"{ctx.lives.get(i, 0)} restart(s) of it so far; last error: {cause}); the last "
                             "checkpoint is intact: find the cause (memory? lower rollout.kv_cache_gib or "
                             "rollout.workers) and continue with --resume") from e
        ctx.lives[i] = ctx.lives.get(i, 0) + 1
        ctx.worker_restarts += 1
        if ctx.pusher.collective:  # a new process, outside the push group: the object store from now on
            from rlreason.rollout.weight_channel import ObjectStorePush

            ctx.pusher = ObjectStorePush()
        try:
            if ctx.learner is not None:
                ray.get(worker.load_weights.remote(ctx.learner.export_weights.remote()))
            else:  # (an evaluation: the restarted engine serves what it started with)
                ray.get(worker.resume_serving.remote())
            if i in ctx.seeds:
                ray.get(worker.reseed.remote(ctx.seeds[i]))
            return
        except ray.exceptions.RayActorError as e:  # died again while being revived
            if_learner_lost(ctx, e)
            error = e


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


def if_learner_lost(ctx, error: Exception) -> None:
    """Raise ``LearnerLost`` when ``error`` is the learner's death (also when it reaches a worker's call through
    a weight push the learner did not live to export)."""
    if ctx.learner is not None and ctx.learner.owns(getattr(error, "actor_id", None)):
        raise learner_lost(error, ctx.learner) from error


def learner_lost(error: Exception, group=None) -> LearnerLost:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    what = getattr(group, "failure", None) or f"the learner process died ({first})"
    return LearnerLost(f"{what}; the run stops here; the last checkpoint is intact: continue with --resume")
