"""Curricula: a task whose training stream gets harder as the policy gets better at it.

The drivers report every scored training group to its task (:func:`observe_training`, right after scoring, before
dynamic sampling drops any group): a task that has an ``observe(problem, accuracy)`` method hears how each of its
problems did, and its ``train_problems`` generator reads the level it has reached when it makes the next problem.
:class:`LevelWindow` is the usual rule: the level goes up when the mean accuracy of the last ``window`` groups drawn
at the current level reaches ``threshold`` (groups drawn at an earlier level, still in flight, do not count).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydantic import Field

from rlreason.registry import UnknownNameError
from rlreason.section import Section
from rlreason.types import Problem, ScoredGroup


class CurriculumSettings(Section):
    """When a task's training stream moves one difficulty level up."""

    threshold: float = Field(0.7, ge=0.0, le=1.0, description="move up when the recent training accuracy reaches "
                             "this (0: after every window)")
    window: int = Field(64, ge=1, description="training groups (prompts) of the current level whose mean "
                        "accuracy is compared")
    start: int = Field(0, ge=0, description="the level the stream starts at (0: the easiest)")


@dataclass
class LevelWindow:
    """The recent training accuracy of one problem stream at its current level."""

    settings: CurriculumSettings
    level: int = 0
    recent: deque = field(default_factory=deque)

    def observe(self, level: int, accuracy: float) -> bool:
        """Record a group drawn at ``level``; True when the last ``window`` groups of the current level reached the
        threshold (the window then starts again: the caller moves the level up, or stays at the top)."""
        if level != self.level:
            return False
        self.recent.append(accuracy)
        while len(self.recent) > self.settings.window:
            self.recent.popleft()
        if len(self.recent) < self.settings.window or statistics.fmean(self.recent) < self.settings.threshold:
            return False
        self.recent.clear()
        return True


def observe_training(groups: Iterable[ScoredGroup]) -> None:
    """Tell each scored training group's task how the group did (its share of correct completions), when the task
    listens (has ``observe``). Problems of tasks no registry knows (a stream's) are skipped."""
    listeners: dict[str, Callable[[Problem, float], None] | None] = {}
    for group in groups:
        name = group.problem.task
        if name not in listeners:
            listeners[name] = _listener(name)
        if listeners[name] is not None and group.results:
            listeners[name](group.problem, statistics.fmean(r.correct for r in group.results))


def _listener(name: str) -> Callable[[Problem, float], None] | None:
    from rlreason.tasks.registry import TASKS

    try:
        task = TASKS.get(name)
    except (UnknownNameError, ValueError):
        return None
    return getattr(task, "observe", None)
