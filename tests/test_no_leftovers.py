"""Nothing outlives its run: a driver killed with SIGKILL in the middle of a step (what the kernel's out-of-memory
killer does) leaves no process and no file on tmpfs behind, within 30 s, whichever driver it was."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

SHM = Path("/dev/shm")

DRIVERS = {  # (command, recipe args): a long run of each driver, small steps
    "sync": ["train", "train.steps=200"],
    "async": ["train", "train.steps=200", "rollout.mode=async"],
    "continual": ["continual", "continual", "continual.phases=[{task: addition, steps: 100}, "
                  "{task: subtraction, steps: 100}]"],
    "es": ["train", "es", "train.steps=200", "algorithm.population=4", "rollout.prompts_per_step=4"],
}
SMALL = ["eval.before=false", "rollout.prompts_per_step=8", "rollout.group_size=4", "output.tensorboard=false",
         "tasks.eval_size=8", "eval.samples=1", "name=victim"]


def _descendants(pid: int) -> dict[int, float]:
    with_times = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            with_times[child.pid] = child.create_time()
        except psutil.Error:
            pass
    return with_times


def _alive(pid: int, created: float) -> bool:
    try:
        process = psutil.Process(pid)
        return process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# one watchdog for all; the sync driver is also killed this way (and resumed) in tests/test_resume.py, fast
@pytest.mark.parametrize("driver", [pytest.param(d, marks=pytest.mark.slow) for d in DRIVERS])
def test_a_driver_killed_mid_step_leaves_nothing_behind(tmp_path, driver):
    shm_before = set(os.listdir(SHM)) if SHM.is_dir() else set()
    command, *args = DRIVERS[driver]
    run = subprocess.Popen([sys.executable, "-m", "rlreason.cli", command, *args, *SMALL], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics, deadline = tmp_path / "runs" / "victim" / "metrics.jsonl", time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().count('"train"') >= 1):  # step 1 done: step 2 under way
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read().decode()[-3000:]
        time.sleep(0.05)
    kill_and_check_nothing_is_left(run, shm_before)


def kill_and_check_nothing_is_left(run: subprocess.Popen, shm_before: set[str]) -> None:
    """SIGKILL the driver ``run`` alone; within 30 s no process it started, no process with its mark, nothing of it
    on tmpfs remains (``shm_before``: /dev/shm's names before it started). Also used by tests/test_resume.py."""
    from rlreason.run.guardian import marked

    family = _descendants(run.pid)
    guardian = next(p for p in psutil.Process(run.pid).children() if "rlreason.run.guardian" in " ".join(p.cmdline()))
    _, _, mark, tmp = guardian.cmdline()[-4:]
    assert len(family) >= 5 and Path(tmp).is_dir()  # Ray's processes, the engine, the learner, the scorer's
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p, t) for p, t in family.items()) or marked(mark):
        assert time.monotonic() < deadline, [psutil.Process(p).cmdline()[:2] for p, t in family.items()
                                             if _alive(p, t)]
        time.sleep(0.5)
    assert not Path(tmp).exists()
    left = (set(os.listdir(SHM)) if SHM.is_dir() else set()) - shm_before
    assert not left, left
