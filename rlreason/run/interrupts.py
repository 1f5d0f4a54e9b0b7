"""Ctrl-C and SIGTERM during a run.

The first one, during a training step, asks the run to stop after it: the driver finishes that step (its update,
its weight push, its metrics), then takes the orderly path (``KeyboardInterrupt`` between steps: a checkpoint of
that step, the model saved, every actor and engine shut down). If the step has not finished within
``train.stop_wait_s``, the orderly stop begins anyway (a checkpoint of the last completed step). Outside a step
(start-up, an evaluation) the orderly stop begins at once. A second one (the user
does not want to wait) stops at once: every process the run started is killed (SIGKILL) and the driver exits with
130, writing nothing more. SIGTERM (a scheduler's stop) is treated like Ctrl-C.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

import psutil

STOPS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """The two-stage handler. ``requested``: a stop was asked for; the driver calls ``check()`` between steps.
    ``next_is_hard()`` makes the next signal stop at once (during the shut-down, where an orderly stop would be cut
    short and leave processes behind)."""

    def __init__(self, cluster, wait_s: float = 300.0) -> None:
        self.cluster, self.count, self.wait_s = cluster, 0, wait_s
        self.requested, self.in_step, self._timer = False, False, None

    def __call__(self, signum, frame) -> None:
        self.count += 1
        if self.count == 1 and not self.in_step:  # start-up, an evaluation, a checkpoint: the orderly path now
            raise KeyboardInterrupt
        if self.count == 1:
            self.requested = True
            print(f"\nstopping after the step in flight (at most {self.wait_s:.0f} s; again to stop at once)",
                  file=sys.stderr, flush=True)
            self._timer = threading.Timer(self.wait_s, _thread.interrupt_main)  # the step hangs: stop anyway
            self._timer.daemon = True
            self._timer.start()
            return
        print("\nsecond interrupt: stopping at once (no checkpoint, no model saved)", file=sys.stderr, flush=True)
        kill_now(self.cluster)
        os._exit(130)

    @contextlib.contextmanager
    def step_in_flight(self) -> Iterator[None]:
        """The block of a training step (its generation, update, push, metrics): a first stop waits for its end,
        then begins (``KeyboardInterrupt``, the orderly path, which checkpoints that step)."""
        self.in_step = True
        try:
            yield
        finally:
            self.in_step = False
        if self.requested:
            self.cancel_timer()
            raise KeyboardInterrupt

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def next_is_hard(self) -> None:
        self.cancel_timer()
        self.count = max(self.count, 1)


@contextlib.contextmanager
def interrupts(cluster, wait_s: float = 300.0) -> Iterator[Interrupts]:
    """Install the handler for the block (main thread only; installed after Ray's start-up, whose own SIGTERM
    handler just exits), restoring the previous handlers afterwards."""
    handler = Interrupts(cluster, wait_s)
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
