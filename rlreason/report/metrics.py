"""Flat ``{name: float}`` metrics to a JSONL file, TensorBoard, and a memory monitor for the whole run.

Every line of ``metrics.jsonl`` is written and flushed when the step ends, so a crash loses at most the step in
flight. The console side (progress bar, tables) lives in ``rlreason.report.console``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil


class MetricsLogger:
    """``trackers``: objects with ``log(step, metrics, kind)`` and ``close()`` (``rlreason.report.trackers``)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, trackers: list | None = None,
                 purge_step: int | None = None) -> None:
        """``purge_step``: a resumed run's first step; TensorBoard hides what was logged from there on before."""
        self._trackers: list = []
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "metrics.jsonl"
        self.lines = len(path.read_text().splitlines()) if path.exists() else 0  # where a checkpoint stands
        self._file = open(path, "a", buffering=1)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)
        self.add_trackers(trackers or [])

    def add_trackers(self, trackers: list) -> None:
        """Also log to these from now on; they are closed with the logger."""
        self._trackers += list(trackers)

    def write(self, step: int, metrics: dict[str, float], kind: str = "train") -> None:
        self._file.write(json.dumps({"kind": kind, "step": step, "time": time.time(), **metrics}) + "\n")
        self.lines += 1
        if self._tb is not None:
            for name, value in metrics.items():
                self._tb.add_scalar(f"{kind}/{name}", value, step)
        for tracker in self._trackers:
            tracker.log(step, metrics, kind)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        for tracker in self._trackers:  # each one guarded: one failing close does not skip the others
            tracker.close()

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tree_rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process and all its descendants (Ray's raylet and actors included)."""
    try:
        root = psutil.Process(pid or os.getpid())
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class MemoryMonitor:
    """Samples the process tree's RSS in a background thread; ``peak_gib`` is the largest sum seen."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s, self.peak_bytes = interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_bytes = max(self.peak_bytes, tree_rss_bytes())

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / 2**30

    def __enter__(self) -> "MemoryMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
