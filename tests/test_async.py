"""Asynchronous rollouts: staleness bounded by rollout.max_staleness and measured per step, stale data dropped and
counted, the effective sample size of the importance weights logged, a resumed async run continuing; and the
sync/async drivers sharing the loop."""

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch

from rlreason.algorithms.common import effective_sample_size
from rlreason.drivers.async_rollouts import fresh_groups
from rlreason.types import Completion, Problem, ScoredGroup, VerifyResult

ARGS = ["rollout.prompts_per_step=8", "rollout.group_size=4", "eval.before=false", "eval.after=false",
        "output.tensorboard=false", "output.save_model=false", "tasks.eval_size=8", "eval.samples=1",
        "rollout.mode=async", "rollout.max_staleness=2", "algorithm.tis_mode=token", "train.checkpoint_every=2",
        "name=a"]


def test_effective_sample_size_is_one_on_policy_and_falls_when_one_sample_dominates():
    mask = torch.ones(4, 5)
    assert effective_sample_size((torch.zeros(4, 5), mask)) == {"is_ess": 1.0, "is_ess_seq": 1.0}
    log_w = torch.zeros(4, 5)
    log_w[0, 0] = 30.0  # one token, and so its sequence, carries nearly all the weight
    ess = effective_sample_size((log_w[:2], mask[:2]), (log_w[2:], mask[2:]))  # two micro-batches, pooled
    assert math.isclose(ess["is_ess"], 1 / 20, rel_tol=1e-6) and math.isclose(ess["is_ess_seq"], 1 / 4, rel_tol=1e-6)
    mask[1:, 3:] = 0  # tokens off the mask do not count, whatever their value
    log_w = torch.where(mask > 0, torch.zeros(4, 5), torch.full((4, 5), 9.0))
    assert effective_sample_size((log_w, mask)) == {"is_ess": 1.0, "is_ess_seq": 1.0}


def _group(version: int, rewards: list[float]) -> ScoredGroup:
    problem = Problem(id=f"p{version}{rewards}", prompt="1+1=", task="arithmetic", verifier="exact_answer",
                      reference="2")
    completions = [Completion(problem.id, [1], [2], [-0.5], "stop", version, "2") for _ in rewards]
    return ScoredGroup(problem, completions, [VerifyResult(r) for r in rewards])


def test_data_staler_than_the_bound_is_dropped_and_counted():
    groups = [_group(5, [0, 1]), _group(3, [1, 0]), _group(2, [0, 1]), _group(4, [1, 1])]
    kept, info, dropped = fresh_groups(groups, version=5, max_staleness=2, filter_zero_variance=False)
    assert [g.completions[0].policy_version for g in kept] == [5, 3, 4] and dropped == 1
    assert math.isclose(info["staleness_mean"], 1.0)
    kept, info, dropped = fresh_groups(groups, version=5, max_staleness=2, filter_zero_variance=True)
    assert [g.completions[0].policy_version for g in kept] == [5, 3] and info["filtered_groups"] == 1.0


def _train_lines(run_dir):
    return [x for x in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if x["kind"] == "train"]


def test_an_async_run_keeps_its_staleness_bound_logs_ess_and_resumes(tmp_path):
    cmd = [sys.executable, "-m", "rlreason.cli", "train", *ARGS]
    run = subprocess.run([*cmd, "train.steps=5"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = _train_lines(tmp_path / "runs" / "a")
    # batch t is sampled from the weights of step t-2 (two batches ahead), none before step 0
    assert [x["staleness_max"] for x in lines] == [0, 1, 2, 2, 2]
    assert [x["policy_version"] for x in lines] == [1, 2, 3, 4, 5]
    assert all(0 < x["is_ess"] <= 1 and 0 < x["is_ess_seq"] <= 1 and x["stale_dropped"] == 0 for x in lines)
    assert lines[0]["is_ess"] > 0.999  # on-policy at step 1: only the engine/learner numerics differ
    run_dir = tmp_path / "runs" / "a"
    state = json.loads((run_dir / "checkpoints" / "step-000004" / "controller.json").read_text())
    # after step 4 the batches of steps 5 and 6 were in flight: a resume draws them again
    assert state["drawn"] == 4 * 8 and state["too_long"] == 0
    shutil.rmtree(run_dir / "checkpoints" / "step-000005")  # as if the run had died during step 5
    (run_dir / "summary.json").unlink()
    resumed = subprocess.run([*cmd, "train.steps=6", "--resume"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from step-000004" in resumed.stdout
    lines = _train_lines(run_dir)
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert [x["staleness_max"] for x in lines[4:]] == [0, 1]  # the pipeline refills from the checkpoint's weights


def test_async_engines_leave_the_learner_its_cores():
    """Async: the learner trains while the engines generate; the engines are bound to the cores after the
    learner's (all of them for both made async slower than sync on 2 cores). Sync: the engines get every core."""
    import os

    from rlreason.rollout.engine import cpu_engine_env

    cores = os.cpu_count()
    if cores < 2:
        pytest.skip("needs 2 cores")
    sync, shared = cpu_engine_env(0, 1, 1), cpu_engine_env(0, 1, 1, reserved=cores // 2)
    assert (sync["OMP_NUM_THREADS"], sync["VLLM_CPU_OMP_THREADS_BIND"]) == (str(cores), f"0-{cores - 1}")
    assert shared["OMP_NUM_THREADS"] == str(cores - cores // 2)
    assert shared["VLLM_CPU_OMP_THREADS_BIND"] == f"{cores // 2}-{cores - 1}"
