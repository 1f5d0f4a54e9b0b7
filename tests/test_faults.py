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
    out, err = open(tmp_path / "out.txt", "w"), open(tmp_path / "err.txt", "w")  # (a full pipe would block)
    return subprocess.Popen(cmd, cwd=tmp_path, text=True, stdout=out, stderr=err)


def _err(tmp_path) -> str:
    return " ".join((tmp_path / "err.txt").read_text().split())


def _lines(run_dir):
    path = run_dir / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _titled(run, title: str):
    for child in psutil.Process(run.pid).children(recursive=True):
        try:
            if " ".join(child.cmdline()).startswith(title):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def _kill_when(run, title: str, after_steps: int, run_dir, victim: str | None = None, timeout=300) -> int:
    """Once ``after_steps`` steps are done and a process of the run is titled ``title`` (Ray names a busy actor
    ``ray::Class.method``), SIGKILL the one titled ``victim`` (default: that one); returns the steps done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before the kill"
        done = len(_lines(run_dir))
        if done >= after_steps and _titled(run, title) is not None:
            target = _titled(run, victim or title)
            if target is not None:
                target.send_signal(signal.SIGKILL)
                return done
        time.sleep(0.005)
    raise AssertionError(f"no {title} process seen")


def _wait_steps(run, run_dir, n, timeout=300):
    deadline = time.monotonic() + timeout
    while len(_lines(run_dir)) < n:
        assert run.poll() is None and time.monotonic() < deadline, "the run stopped"
        time.sleep(0.2)


def _no_process_left(family, timeout=60):
    deadline = time.monotonic() + timeout
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in family):
        assert time.monotonic() < deadline, "processes left behind"
        time.sleep(0.5)


def _checkpoint_steps(run_dir):
    return sorted(int(p.name[5:]) for p in (run_dir / "checkpoints").glob("step-*") if (p / "COMPLETE").is_file())


def test_a_killed_rollout_worker_is_restarted_and_one_that_keeps_dying_stops_the_run(tmp_path):
    run_dir = tmp_path / "runs" / "f"
    run = _start(tmp_path, "train.steps=60", "rollout.max_restarts=1", "name=f")
    first = _kill_when(run, "ray::RolloutEngine.generate", 2, run_dir)  # mid-generation
    _wait_steps(run, run_dir, first + 2)  # the step the kill hit completes, and the next one
    lines = _lines(run_dir)
    assert [x["step"] for x in lines] == list(range(1, len(lines) + 1)), "a step was lost"
    assert lines[first - 1]["worker_restarts"] == 0 and lines[first + 1]["worker_restarts"] == 1
    # every step sampled from the weights of the step before: the restarted engine was given the run's weights
    assert all(x["staleness_max"] == 0 for x in lines), [x["staleness_max"] for x in lines]
    family = [c.pid for c in psutil.Process(run.pid).children(recursive=True)]
    _kill_when(run, "ray::RolloutEngine.generate", first + 2, run_dir)  # rollout.max_restarts=1: used up
    run.wait(timeout=300)
    assert run.returncode == 1, _err(tmp_path)[-3000:]
    assert "error: rollout worker 0 died and was not restarted (rollout.max_restarts is 1" in _err(tmp_path)
    assert "continue with --resume" in _err(tmp_path)
    done = len(_lines(run_dir))
    assert _checkpoint_steps(run_dir)[-1] == done  # the last completed step is checkpointed, intact
    _no_process_left(family)


@pytest.mark.slow
def test_a_dead_learner_stops_the_run_with_its_last_checkpoint_intact(tmp_path):
    run_dir = tmp_path / "runs" / "l"
    run = _start(tmp_path, "train.steps=60", "name=l")
    _wait_steps(run, run_dir, 2)
    family = [c.pid for c in psutil.Process(run.pid).children(recursive=True)]
    _kill_when(run, "ray::Learner.train_step", 2, run_dir)
    run.wait(timeout=300)
    assert run.returncode == 1, _err(tmp_path)[-3000:]
    assert "error: the learner process died" in _err(tmp_path) and "continue with --resume" in _err(tmp_path)
    steps = _checkpoint_steps(run_dir)
    assert steps and steps[-1] == len(_lines(run_dir))
    _no_process_left(family)


def test_a_restarted_engine_refuses_to_generate_until_it_is_given_weights(tiny_model_path):
    """A worker that died while idle and came back before its next call must not sample from the weights it
    started with (the run's are newer): generate refuses until a push arrives."""
    import os

    import ray

    from rlreason.rollout.engine import RolloutEngine, SamplingSpec, cpu_engine_env
    from rlreason.rollout.recovery import EngineRestarted
    from rlreason.tasks import get_task

    problems = get_task("arithmetic").eval_problems(2)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        engine = ray.remote(RolloutEngine).options(max_restarts=1, runtime_env={"env_vars": cpu_engine_env(0, 1, 1)}
                                                   ).remote(tiny_model_path)
        assert ray.get(engine.generate.remote(problems, SamplingSpec(2, 8)))  # a fresh engine generates
        assert ray.get(engine.threads.remote()) == os.cpu_count()  # (Ray starts actors with 1: 1.6x slower)
        os.kill(ray.get(engine.pid.remote()), 9)
        deadline = time.monotonic() + 300
        while True:  # back (Ray restarted it) before anyone calls it again
            try:
                ray.get(engine.get_version.remote(), timeout=300)
                break
            except ray.exceptions.ActorUnavailableError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        with pytest.raises(EngineRestarted):
            ray.get(engine.generate.remote(problems, SamplingSpec(2, 8)))
        ray.get(engine.resume_serving.remote())
        assert len(ray.get(engine.generate.remote(problems, SamplingSpec(2, 8)))) == 2
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_an_engine_that_dies_during_a_collective_push_ends_the_run_in_seconds_with_one_line():
    """Learner rank 0 broadcasts to two engines; engine 1 is killed (SIGKILL, as the out-of-memory killer does) while
    the broadcast waits for it. Every member is stopped and the push fails in seconds, naming the engine (it used to
    wait for the collective's two-minute timeout, then revive the engine behind the stuck broadcast)."""
    import os

    import ray

    from rlreason.controller import Context, all_or_nothing
    from rlreason.recipe import load_config
    from rlreason.rollout.recovery import PushLost
    from rlreason.rollout.weight_channel import open_pusher
    from rlreason.run.cluster import start_cluster

    cfg = load_config(None, ["rollout.workers=2", "rollout.push=collective"])
    cluster = start_cluster(cfg)
    try:
        ctx = Context(cfg, cluster.workers, cluster.learner, None)
        ctx.pusher = open_pusher(cfg, cluster)
        assert ctx.pusher.collective
        calls, sent = ctx.pusher.start(ctx)  # the learner is in the broadcast, waiting for the engines
        os.kill(ray.get(cluster.workers[1].where.remote())["pid"], signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(PushLost, match=r"^rollout worker 1 failed during a collective weight push"):
            all_or_nothing(ctx, calls, sent)
        assert time.monotonic() - start < 30
    finally:
        cluster.shutdown()
