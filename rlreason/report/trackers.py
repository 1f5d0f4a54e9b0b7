"""Experiment trackers next to ``metrics.jsonl`` and TensorBoard: ``output.trackers: [wandb, mlflow]``.

Both are optional extras (``pip install 'rlreason[trackers]'``) and are configured the way their users expect:
- ``wandb``: project ``output.project``, run name = the recipe's ``name``, the resolved recipe as the run config,
  files under the run directory; offline with ``WANDB_MODE=offline`` (sync later with ``wandb sync``).
- ``mlflow``: experiment ``output.project``, ``MLFLOW_TRACKING_URI`` when set (a server or a database), else a
  local file store in ``<run>/mlruns`` (MLflow 3 keeps that store in maintenance mode; we opt in with
  ``MLFLOW_ALLOW_FILE_STORE``); the recipe's fields as flat params.
Metric names are ``<kind>/<name>`` (``train/loss``, ``eval/arithmetic/accuracy``), as in TensorBoard.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rlreason.section import flatten


class WandbTracker:
    def __init__(self, run_dir: Path, name: str, project: str, recipe: dict) -> None:
        import wandb

        self._run = wandb.init(project=project, name=name, dir=str(run_dir), config=recipe, reinit="finish_previous")

    def log(self, step: int, metrics: dict[str, float], kind: str) -> None:
        self._run.log({f"{kind}/{k}": v for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        self._run.finish()


class MlflowTracker:
    def __init__(self, run_dir: Path, name: str, project: str, recipe: dict) -> None:
        import mlflow

        self._mlflow = mlflow
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # the local file store: MLflow 3 keeps it working but asks for an explicit opt-in
            uri = (run_dir / "mlruns").resolve().as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(project)
        self._run = mlflow.start_run(run_name=name)
        params = {k: str(v)[:500] for k, v in flatten(recipe).items()}  # MLflow params are short strings
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per call
            mlflow.log_params(dict(list(params.items())[i: i + 100]))

    def log(self, step: int, metrics: dict[str, float], kind: str) -> None:
        clean = {f"{kind}/{k}".replace("@", "_at_"): float(v) for k, v in metrics.items()}
        self._mlflow.log_metrics(clean, step=step)

    def close(self) -> None:
        self._mlflow.end_run()


KINDS = {"wandb": WandbTracker, "mlflow": MlflowTracker}


class TrackerError(RuntimeError):
    """A tracker could not start (one line, naming it)."""


class Guarded:
    """A tracker whose failures never stop training: the first error is reported once and the tracker is dropped
    (metrics.jsonl still has everything)."""

    def __init__(self, kind: str, tracker) -> None:
        self.kind, self._tracker = kind, tracker

    def log(self, step: int, metrics: dict[str, float], kind: str) -> None:
        if self._tracker is None:
            return
        try:
            self._tracker.log(step, metrics, kind)
        except Exception as e:  # noqa: BLE001 - a network hiccup must not end a run
            print(f"warning: output.trackers: {self.kind} failed ({type(e).__name__}: {e}); no longer logging to "
                  "it (metrics.jsonl has everything)", file=sys.stderr)
            self.close()

    def close(self) -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            try:
                tracker.close()
            except Exception as e:  # noqa: BLE001
                print(f"warning: output.trackers: {self.kind} did not close cleanly ({type(e).__name__})",
                      file=sys.stderr)


def open_trackers(names, run_dir: Path, name: str, project: str, recipe: dict) -> list:
    """Start each tracker; TrackerError (after closing those already started) when one cannot start."""
    started = []
    for kind in names:
        try:
            started.append(Guarded(kind, KINDS[kind](run_dir, name, project, recipe)))
        except Exception as e:  # noqa: BLE001 - not logged in, bad URI, ...
            for tracker in started:
                tracker.close()
            raise TrackerError(f"output.trackers: {kind} could not start ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return started
