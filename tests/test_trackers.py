"""Experiment trackers, for real and offline: wandb in offline mode and MLflow's local file store receive the
same metrics as metrics.jsonl; a tracker that is not installed is refused when the recipe is validated."""

import json

import pytest

from rlreason.report.metrics import MetricsLogger
from rlreason.report.trackers import open_trackers


def test_wandb_offline_and_mlflow_file_store_get_the_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = {"name": "t", "train": {"lr": 0.001, "steps": 3}}
    trackers = open_trackers(("wandb", "mlflow"), tmp_path, "t", "rlreason-test", recipe)
    with MetricsLogger(tmp_path, tensorboard=False, trackers=trackers) as log:
        for step in (1, 2, 3):
            log.write(step, {"loss": 1.0 / step, "reward_mean": 0.1 * step})
        log.write(3, {"arithmetic/accuracy": 0.5, "arithmetic/pass@4": 0.75}, kind="eval")
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 4

    from mlflow.tracking import MlflowClient

    client = MlflowClient((tmp_path / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("rlreason-test").experiment_id])
    assert [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1.0, 0.5, 1 / 3]
    assert run.data.metrics["eval/arithmetic/pass_at_4"] == 0.75 and run.data.params["train.lr"] == "0.001"

    # wandb's offline run log (protobuf records; wandb 0.31 ships no reader): every metric key and value is in it
    (log_file,) = (tmp_path / "wandb").glob("offline-run-*/*.wandb")
    data = log_file.read_bytes()
    for key in (b"train/loss", b"train/reward_mean", b"eval/arithmetic/pass@4", b"rlreason-test"):
        assert key in data, key
    assert b"0.3333333333333333" in data and b"0.75" in data


def test_a_tracker_that_is_not_installed_is_refused_up_front(monkeypatch):
    import rlreason.recipe.checks as checks
    from rlreason.recipe import RecipeError, load_config

    monkeypatch.setitem(checks.TRACKER_PACKAGES, "wandb", "wandb_not_installed_here")
    with pytest.raises(RecipeError, match=r"^output.trackers: 'wandb' is not installed"):
        load_config(None, ["output.trackers=[wandb]"])
    with pytest.raises(RecipeError, match=r"^output.trackers.0: Input should be 'wandb' or 'mlflow'"):
        load_config(None, ["output.trackers=[comet]"])


def test_a_tracker_that_fails_is_dropped_with_one_warning_and_the_run_goes_on(tmp_path, capsys):
    from rlreason.report.trackers import Guarded

    class Flaky:  # stands in for a network failure inside a tracker's log call, not for a tracker
        calls = 0

        def log(self, step, metrics, kind):
            Flaky.calls += 1
            raise ConnectionError("offline")

        def close(self):
            raise RuntimeError("also broken")

    with MetricsLogger(tmp_path, tensorboard=False, trackers=[Guarded("wandb", Flaky())]) as log:
        for step in (1, 2, 3):
            log.write(step, {"loss": 1.0})
    assert Flaky.calls == 1 and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    err = capsys.readouterr().err
    assert err.count("output.trackers: wandb failed (ConnectionError: offline)") == 1
