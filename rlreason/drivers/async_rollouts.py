"""Asynchronous rollouts (``rollout.mode: async``): the engines generate the next ``rollout.max_staleness`` (K)
batches while the learner trains on this one.

Ray runs an actor's calls in the order they were sent, so the pipeline is a matter of ordering, not threads. Step
t collects batch t, sends batch t+K to the engines (behind the batches already there), trains on batch t, then
sends the new weights, which queue behind that generation: a push never stalls generation longer than the push
itself. Batch t+K is thus sampled from the weights of step t-1 and trained at step t+K: every completion carries
the policy version that made it, and its staleness (learner version minus that) is K in the steady state, less at
the start. Data staler than K (none in a healthy run; a guard) is dropped and counted. The learner corrects the
rest with the recipe's importance-sampling switches (``algorithm.tis_mode``: token or sequence TIS, truncate or
mask) and logs the effective sample size of the importance weights (``is_ess``, ``is_ess_seq``) every step.

Differences from sync mode: DAPO-style dynamic sampling drops zero-variance groups without refilling the batch; a
resumed run continues at the right data position, but the batches that were in flight are generated again from
the checkpoint's (newer) weights, so the steps after a resume are not bit-identical to an uninterrupted run's.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass

from rlreason.controller import (Context, gathered, generate, generate_calls, learn, rollout_metrics, sampling_spec,
                                 score, step_seed, take_fitting)
from rlreason.episode_groups import settle
from rlreason.tasks.curriculum import observe_training
from rlreason.rollout.recovery import Pending, collect, issue
from rlreason.types import Problem, ScoredGroup


@dataclass
class InFlight:
    step: int  # the step that will train on it
    drawn: int  # the stream's position before its problems were drawn (where a resume continues)
    too_long: int  # prompts left out as too long before it was drawn
    problems: list[Problem]
    pending: Pending
    sent: float


class AsyncSteps:
    def __init__(self, ctx: Context, stream, console=None) -> None:
        import ray

        self.ctx, self.stream, r = ctx, stream, ctx.cfg.rollout
        self.sampling = sampling_spec(ctx.cfg, r.group_size)
        self.ahead: deque[InFlight] = deque()
        self.pushes: deque[Pending] = deque()
        self.version = ray.get(ctx.learner.get_version.remote())
        self.stale_dropped, self.push_s, self.sent = 0, float("nan"), 0
        if ctx.cfg.algorithm.tis_mode == "off" and console is not None:
            console.print("[yellow]rollout.mode async with algorithm.tis_mode off: stale samples are not "
                          "importance-corrected (algorithm.tis_mode=token corrects them)[/]")

    def position(self) -> tuple[int, int]:
        """Where a resume continues: before the batches in flight (they are drawn again)."""
        first = self.ahead[0] if self.ahead else None
        return (first.drawn, first.too_long) if first else (self.stream.drawn, self.ctx.too_long)

    def _send(self, step: int) -> None:
        ctx, n = self.ctx, len(self.ctx.workers)
        drawn, too_long = self.stream.drawn, ctx.too_long
        problems = take_fitting(ctx, self.stream, ctx.cfg.rollout.prompts_per_step)
        seeds = {i: step_seed(ctx.cfg.seed, step, i) for i in range(n)}
        ctx.seeds = seeds  # what a revived worker is reseeded with
        pending = issue(ctx, generate_calls(problems, n, self.sampling, seeds))
        self.ahead.append(InFlight(step, drawn, too_long, problems, pending, time.perf_counter()))

    def _fill(self, upto: int) -> None:
        """Batches in flight for every step up to ``upto``."""
        while self.sent < upto:
            self.sent += 1
            self._send(self.sent)

    def _push(self) -> None:
        """Send the learner's new weights to every engine; collected later, when done (never waited on here)."""
        update = self.ctx.learner.export_weights.remote()
        self.pushes.append(issue(self.ctx, {i: (lambda w: w.load_weights.remote(update))
                                            for i in range(len(self.ctx.workers))}, reissue=False))

    def _collect_pushes(self) -> None:
        import ray

        while self.pushes and not ray.wait(list(self.pushes[0].refs), num_returns=len(self.pushes[0].refs),
                                           timeout=0)[1]:
            self.push_s = max(collect(self.ctx, self.pushes.popleft()).values(), default=self.push_s)

    def __call__(self, step: int) -> dict[str, float]:
        ctx, last, k = self.ctx, self.ctx.cfg.train.steps, self.ctx.cfg.rollout.max_staleness
        start = time.perf_counter()
        self.sent = max(self.sent, step - 1)  # (a resumed run starts after its checkpoint)
        self._fill(min(step + k - 1, last))
        flight = self.ahead.popleft()
        generated = gathered(flight.problems, len(ctx.workers), collect(ctx, flight.pending))
        waited, in_flight = time.perf_counter() - start, time.perf_counter() - flight.sent
        self._fill(min(step + k, last))  # the engines go on while the learner trains
        settled, failed = settle(score(ctx, generated), ctx.cfg.env.on_failure, ctx.cfg.env.max_failed_frac,
                                 lambda again: score(ctx, generate(ctx, again, self.sampling)))
        ctx.failed_episodes += failed
        observe_training(settled)  # (a curriculum hears every group, also stale and filtered ones)
        groups, info, dropped = fresh_groups(settled, self.version, k, ctx.cfg.algorithm.filter_zero_variance)
        self.stale_dropped += dropped
        tokens = sum(c.sampled for _, group in generated for c in group)
        stats = learn(ctx, groups)
        self.version = int(stats["policy_version"])
        self._push()
        self._collect_pushes()
        return {**rollout_metrics(groups, in_flight), "rollout_tokens": float(tokens), **stats, **info,
                "stale_dropped": float(self.stale_dropped),
                "rollout_wait_s": waited, "weight_load_s": self.push_s, "step_time_s": time.perf_counter() - start}


def fresh_groups(groups: list[ScoredGroup], version: int, max_staleness: int,
                 filter_zero_variance: bool) -> tuple[list[ScoredGroup], dict[str, float], int]:
    """The groups to train on at learner ``version``: those at most ``max_staleness`` versions old (and, with
    dynamic sampling, of varied rewards); their mean staleness (``learn`` reports the maximum); how many were
    dropped as too stale.
    Never an empty batch: when nothing is left, the groups are kept as they are."""
    aged = [(g, version - min(c.policy_version for c in g.completions)) for g in groups]
    fresh = [(g, s) for g, s in aged if s <= max_staleness] or aged
    kept = [(g, s) for g, s in fresh if len(set(g.rewards)) > 1] if filter_zero_variance else fresh
    kept = kept or fresh
    ages = [s for _, s in kept]
    return [g for g, _ in kept], {"staleness_mean": statistics.fmean(ages),
                                  "filtered_groups": float(len(fresh) - len(kept))}, len(aged) - len(fresh)
