"""Worker faults, through real processes: a rollout worker killed mid-generation is restarted by Ray, given the
current weights, and its lost work is generated again (every step completes); one that keeps dying stops the run
with one line and an intact checkpoint; a learner that dies stops the run the same way. No process is left."""

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest

ARGS = ["rollout.prompts_per_step=16", "rollout.group_size=8", "eval.before=false", "eval.after=false",
        "output.tensorboard=false", "output.save_model=false", "tasks.eval_size=8", "eval.samples=1",
        "train.checkpoint_every=1"]


def _start(tmp_path, *args):
    cmd = [sys.executable, "-m", "rlreason.cli", "train", *ARGS, *args]
    return subprocess.Popen(cmd, cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _lines(run_dir):
    path = run_dir / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _kill_when(run, title: str, after_steps: int, run_dir, timeout=300) -> int:
    """SIGKILL the run's process whose title is ``title`` (Ray names a busy actor ``ray::Class.method``) once
    ``after_steps`` steps are done; returns the number of steps done at the kill."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before the kill: " + run.stderr.read()[-3000:]
        done = len(_lines(run_dir))
        if done >= after_steps:
            for child in psutil.Process(run.pid).children(recursive=True):
                try:
                    if " ".join(child.cmdline()).startswith(title):
                        child.send_signal(signal.SIGKILL)
                        return done
                except psutil.NoSuchProcess:
                    continue
        time.sleep(0.005)
    raise AssertionError(f"no {title} process seen")


def _no_process_left(family, timeout=60):
    deadline = time.monotonic() + timeout
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in family):
        assert time.monotonic() < deadline, "processes left behind"
        time.sleep(0.5)


def _checkpoint_steps(run_dir):
    return sorted(int(p.name[5:]) for p in (run_dir / "checkpoints").glob("step-*") if (p / "COMPLETE").is_file())


def test_a_killed_rollout_worker_is_restarted_and_one_that_keeps_dying_stops_the_run(tmp_path):
    run_dir = tmp_path / "runs" / "f"
    run = _start(tmp_path, "train.steps=40", "rollout.max_restarts=1", "name=f")
    killed_at = _kill_when(run, "ray::RolloutEngine.generate", 2, run_dir)
    deadline = time.monotonic() + 300  # the step the kill hit completes, and the next one, on the restarted worker
    while len(_lines(run_dir)) < killed_at + 2:
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()[-3000:]
        time.sleep(0.2)
    lines = _lines(run_dir)
    assert [x["step"] for x in lines] == list(range(1, len(lines) + 1)), "a step was lost"
    assert lines[killed_at - 1]["worker_restarts"] == 0 and lines[killed_at + 1]["worker_restarts"] == 1
    assert lines[killed_at + 1]["policy_version"] == killed_at + 2  # the restarted engine trained on, not from 0
    family = [c.pid for c in psutil.Process(run.pid).children(recursive=True)]
    _kill_when(run, "ray::RolloutEngine.generate", killed_at + 2, run_dir)  # rollout.max_restarts=1: used up
    out, err = run.communicate(timeout=300)
    assert run.returncode == 1, out[-2000:] + err[-2000:]
    message = " ".join(err.split())
    assert "error: rollout worker 0 died and was not restarted (rollout.max_restarts is 1" in message
    assert "continue with --resume" in message
    done = len(_lines(run_dir))
    assert _checkpoint_steps(run_dir)[-1] == done  # the last completed step is checkpointed, intact
    _no_process_left(family)


@pytest.mark.slow
def test_a_dead_learner_stops_the_run_with_its_last_checkpoint_intact(tmp_path):
    run_dir = tmp_path / "runs" / "l"
    run = _start(tmp_path, "train.steps=40", "name=l")
    family = []
    deadline = time.monotonic() + 300
    while len(_lines(run_dir)) < 2:
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    family = [c.pid for c in psutil.Process(run.pid).children(recursive=True)]
    _kill_when(run, "ray::Learner.train_step", 2, run_dir)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 1, out[-2000:] + err[-2000:]
    assert "error: the learner process died" in err and "continue with --resume" in err
    steps = _checkpoint_steps(run_dir)
    assert steps and steps[-1] == len(_lines(run_dir))
    _no_process_left(family)
