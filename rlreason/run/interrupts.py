"""Ctrl-C and SIGTERM during a run.

The first one takes the orderly path: ``KeyboardInterrupt`` in the driver, which writes a checkpoint of the last
completed step, saves the model and shuts every actor and engine down. A second one (the user does not want to
wait for that) stops at once: every process the run started is killed (SIGKILL) and the driver exits with 130,
writing nothing more. SIGTERM (a scheduler's stop) is treated like Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

import psutil

STOPS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """The two-stage handler; ``next_is_hard()`` makes the next signal stop at once (during the shut-down, where
    an orderly stop would be cut short and leave processes behind)."""

    def __init__(self, cluster) -> None:
        self.cluster, self.count = cluster, 0

    def __call__(self, signum, frame) -> None:
        self.count += 1
        if self.count == 1:
            raise KeyboardInterrupt
        print("\nsecond interrupt: stopping at once (no checkpoint, no model saved)", file=sys.stderr, flush=True)
        kill_now(self.cluster)
        os._exit(130)

    def next_is_hard(self) -> None:
        self.count = max(self.count, 1)


@contextlib.contextmanager
def interrupts(cluster) -> Iterator[Interrupts]:
    """Install the handler for the block (main thread only; installed after Ray's start-up, whose own SIGTERM
    handler just exits), restoring the previous handlers afterwards."""
    handler = Interrupts(cluster)
    if threading.current_thread() is not threading.main_thread():
        yield handler
        return
    previous = {s: signal.signal(s, handler) for s in STOPS}
    try:
        yield handler
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def kill_now(cluster) -> None:
    """SIGKILL every process this driver started for the run (Ray's, the engines', the learner's, the scorer's).
    On a cluster the run only joined, its actors are killed through Ray and the scorer's processes directly (the
    host's other children are not the run's)."""
    victims = psutil.Process().children(recursive=True)
    if not cluster.local:
        with contextlib.suppress(Exception):
            import ray

            for actor in cluster.actors:
                ray.kill(actor)
        victims = [p for p in victims if _is_scorer(p)]
    for child in victims:
        with contextlib.suppress(psutil.Error):
            child.kill()


def _is_scorer(process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "multiprocessing" in " ".join(process.cmdline())
    return False
