"""Runs that survive bad numbers and bad data: a non-finite loss skips the update (weights and optimizer state
unchanged) and is counted, too many in a row stop with what to try; over-long prompts, malformed benchmark rows and
a context limit above the model's are handled before they reach an engine."""

import copy
import json
import subprocess
import sys

import pytest
import torch

from rlreason.batching import build_train_batch
from rlreason.recipe import RecipeError, load_config
from rlreason.learner.learner import Learner, NonFiniteError
from batches import good_and_bad_groups


def _same_state(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    return a == b


def test_a_nonfinite_loss_skips_the_update_counts_it_and_stops_after_too_many():
    from transformers import AutoTokenizer

    learner = Learner(load_config(None, ["train.max_nonfinite_in_a_row=2"]))
    groups = good_and_bad_groups(AutoTokenizer.from_pretrained(learner.policy.path))
    good = build_train_batch(groups, learner.algo)
    learner.train_step(good)  # a real update first, so the optimizer has state to protect
    bad = build_train_batch(groups, learner.algo)
    bad.rewards[0] = float("nan")  # a verifier that returned NaN
    weights = copy.deepcopy(learner.model.state_dict())
    optimizer, schedule = copy.deepcopy(learner.optimizer.state_dict()), learner.scheduler.state_dict()
    stats = learner.train_step(bad)
    assert stats.metrics["nonfinite_steps"] == 1.0
    assert _same_state(weights, learner.model.state_dict())
    assert _same_state(optimizer, learner.optimizer.state_dict()) and learner.scheduler.state_dict() == schedule
    assert learner.train_step(good).metrics["nonfinite_steps"] == 1.0  # a good step resets the run of bad ones
    assert not _same_state(weights, learner.model.state_dict())
    learner.train_step(bad)
    with pytest.raises(NonFiniteError, match=r"^2 updates in a row had a non-finite loss or gradient .* try a lower"):
        learner.train_step(bad)


def test_a_context_limit_above_the_models_is_refused():
    with pytest.raises(RecipeError, match=r"^model.max_model_len: 512 is above the model's own limit 256"):
        load_config(None, ["model.max_model_len=512"])


def _gsm8k_dir(tmp_path, rows_train, rows_test, junk=()):
    d = tmp_path / "data" / "gsm8k"
    d.mkdir(parents=True)
    (d / "train.jsonl").write_text("\n".join([json.dumps(r) for r in rows_train] + list(junk)) + "\n")
    (d / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows_test) + "\n")
    return str(tmp_path / "data")


def _sums(n, long=False):
    pad = " Please think about it very carefully before answering." * 6 if long else ""
    return [{"question": f"{i}+{i + 2}=?{pad}", "answer": f"{i}+{i + 2}={2 * i + 2}\n#### {2 * i + 2}"}
            for i in range(n)]


def test_malformed_benchmark_rows_are_skipped_and_counted(tmp_path, capsys):
    from rlreason.tasks import get_task

    data = _gsm8k_dir(tmp_path, _sums(6) + [{"question": "no answer field"}], _sums(3), junk=["{not json"])
    problems = get_task("gsm8k").problems("train", data)
    assert len(problems) == 6
    err = capsys.readouterr().err
    assert "skipped 1 unparseable line(s): 8" in err and "skipped 1 malformed row(s) of train: 7" in err
    bad = _gsm8k_dir(tmp_path / "b", [{"question": "x"}] * 3 + _sums(1), _sums(1))
    with pytest.raises(ValueError, match="3 of 4 rows of train lack the fields it needs"):
        get_task("gsm8k").problems("train", bad)


def test_over_long_prompts_never_reach_the_engine_and_the_run_goes_on(tmp_path):
    data = _gsm8k_dir(tmp_path, _sums(12) + _sums(6, long=True), _sums(4) + _sums(2, long=True))
    proc = subprocess.run([sys.executable, "-m", "rlreason.cli", "train", "tasks.train=[gsm8k]", "tasks.eval=[gsm8k]",
                           f"tasks.data_dir={data}", "train.steps=3", "rollout.prompts_per_step=4",
                           "rollout.max_tokens=48",  # (GSM8K's own 512 would leave the tiny context no room)
                           "rollout.group_size=2", "eval.samples=1", "output.tensorboard=false",
                           "output.save_model=false", "name=long"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "runs" / "long" / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"]
    assert len(train) == 3 and train[-1]["too_long_prompts"] >= 1
    evals = [x for x in lines if x["kind"] == "eval"]
    assert all(e["gsm8k/too_long"] == 2 for e in evals)
