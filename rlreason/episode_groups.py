"""What the drivers do with a step's multi-turn episodes, between scoring and learning.

A failed episode (its environment raised in reset or step) is never trained as a zero-reward row: that would bias
its group's baseline (NeMo-RL shipped exactly that bug). Its group is dropped, or with ``env.on_failure: resample``
sampled once more (dropped if it fails again). Past ``env.max_failed_frac`` of a step's episodes the run stops
with one line naming a failed problem and its error: an environment that fails that often is broken, and training
on what is left would learn from a biased sample. Also the episodes' metrics: turns, tool calls and errors per
episode, the share of episodes ended by each reason, the environment's time, tokens sampled vs of context.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable

from rlreason.types import ScoredGroup


class EnvironmentFailed(RuntimeError):
    """Too many of a step's episodes failed (their environment raised); the message names one and its error."""


def has_failure(group: ScoredGroup) -> bool:
    return any(c.episode is not None and c.episode.failed for c in group.completions)


def settle(groups: list[ScoredGroup], on_failure: str, max_failed_frac: float,
           again: Callable[[list], list[ScoredGroup]] | None = None) -> tuple[list[ScoredGroup], int]:
    """The groups to train on (those without a failed episode; with ``resample``, failed ones sampled once more
    through ``again(problems)``) and how many episodes failed. ``EnvironmentFailed`` past ``max_failed_frac``."""
    failed = [g for g in groups if has_failure(g)]
    if not failed:
        return groups, 0
    episodes = [c for g in groups for c in g.completions]
    broken = [c for c in episodes if c.episode is not None and c.episode.failed]
    if len(broken) > max_failed_frac * len(episodes) or len(failed) == len(groups) and again is None:
        example = broken[0]
        raise EnvironmentFailed(f"{len(broken)} of {len(episodes)} episodes failed (env.max_failed_frac is "
                                f"{max_failed_frac}); e.g. problem {example.problem_id}: {example.episode.error}")
    kept = [g for g in groups if not has_failure(g)]
    if on_failure == "resample" and again is not None:
        kept += [g for g in again([g.problem for g in failed]) if not has_failure(g)]
    if not kept:
        raise EnvironmentFailed(f"every group of the step had a failed episode; e.g. problem "
                                f"{broken[0].problem_id}: {broken[0].episode.error}")
    return kept, len(broken)


def episode_metrics(groups: list[ScoredGroup], workers: int = 1) -> dict[str, float]:
    """Per step: model turns, tool calls and tool errors per episode; the share of episodes ended by each reason
    (``episode_end/<reason>``); the environment's seconds (per worker: episodes of one worker run one after another
    between turns) and the tokens of context the environment added. Empty without episodes."""
    episodes = [c for g in groups for c in g.completions if c.episode is not None]
    if not episodes:
        return {}
    turns = [[t for t in c.episode.turns if t.role == "assistant"] for c in episodes]
    out = {"episode_turns": statistics.fmean(len(t) for t in turns),
           "episode_tool_calls": statistics.fmean(sum(x.tool_calls for x in t) for t in turns),
           "episode_tool_errors": statistics.fmean(sum(x.tool_errors for x in t) for t in turns),
           "env_time_s": sum(c.episode.env_s for c in episodes) / max(1, workers),
           "context_tokens": float(sum(len(c.completion_ids) - c.sampled for c in episodes))}
    reasons = Counter(c.episode.reason for c in episodes)
    out.update({f"episode_end/{reason}": n / len(episodes) for reason, n in reasons.items()})
    return out
