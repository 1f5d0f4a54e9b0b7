"""Checkpoints with exact resume, through real processes: a run killed with SIGKILL after a checkpoint and resumed
produces the same problems and metrics as the uninterrupted run (and two runs of one recipe and seed are identical
step for step); a corrupt newest checkpoint is reported and the one before is used; Ctrl-C writes a checkpoint and
leaves no process behind."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from test_no_leftovers import kill_and_check_nothing_is_left

SMALL = ["rollout.prompts_per_step=4", "rollout.group_size=4", "eval.before=false", "eval.after=false",
         "output.tensorboard=false", "output.save_model=false", "tasks.eval_size=8", "eval.samples=1"]
VOLATILE = {"time", "rollout_time_s", "rollout_tokens_per_s", "learner_time_s", "weight_sync_s", "weight_load_s",
            "step_time_s"}


def _cli(args, cwd, **kw):
    return [sys.executable, "-m", "rlreason.cli", "train", *args], dict(cwd=cwd, text=True, **kw)


def _train_lines(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in x.items() if k not in VOLATILE} for x in lines if x["kind"] == "train"]


def _wait_for(path, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before writing " + str(path)
        time.sleep(0.2)


def test_a_killed_run_resumes_exactly_and_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    """A run killed after a checkpoint and resumed logs what the uninterrupted run logs, step for step. Then its
    newest checkpoint is corrupted: resuming with more steps reports it and uses the one before; what was logged
    after that checkpoint is dropped (metrics.jsonl by the line count the checkpoint holds, TensorBoard by its purge
    step); resuming a finished run does nothing."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = [*SMALL, "train.steps=6", "train.checkpoint_every=3", "output.tensorboard=true"]
    cmd, kw = _cli([*args, "name=a"], tmp_path, capture_output=True, timeout=600)
    whole = subprocess.run(cmd, **kw)
    assert whole.returncode == 0, whole.stderr[-3000:]
    cmd, kw = _cli([*args, "name=b"], tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    victim = subprocess.Popen(cmd, **kw)
    _wait_for(tmp_path / "runs" / "b" / "checkpoints" / "step-000003" / "COMPLETE", victim)
    kill_and_check_nothing_is_left(victim, shm_before)  # the driver alone (what the OOM killer does)
    cmd, kw = _cli([*args, "name=b", "--resume"], tmp_path, capture_output=True, timeout=600)
    resumed = subprocess.run(cmd, **kw)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from step-000003" in resumed.stdout
    a, b = _train_lines(tmp_path / "runs" / "a"), _train_lines(tmp_path / "runs" / "b")
    assert [x["step"] for x in b] == [1, 2, 3, 4, 5, 6]
    assert b[:3] == a[:3], "two runs of the same recipe and seed differ"
    assert b[3:] == a[3:], "the resumed steps differ from the uninterrupted run's"

    run_dir = tmp_path / "runs" / "b"
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000003", "step-000006"]
    assert json.loads((checkpoints / "step-000003" / "controller.json").read_text())["metric_lines"] == 3
    state = checkpoints / "step-000006" / "learner.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a crash mid-write, or a bad disk
    cmd, kw = _cli([*args, "train.steps=7", "eval.after=true", "name=b", "--resume"], tmp_path, capture_output=True,
                   timeout=600)
    again = subprocess.run(cmd, **kw)
    assert again.returncode == 0, again.stderr[-3000:]
    out = " ".join(again.stdout.split())
    assert "checkpoint step-000006 is unusable: learner.pt is missing or truncated; trying the one before" in out
    assert "resuming from step-000003" in out
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(x["kind"], x["step"]) for x in lines] == [("train", s) for s in range(1, 8)] + [("eval", 7)]
    assert _train_lines(run_dir)[3:6] == a[3:]  # steps 4-6 again, the same
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/reward_mean")] == list(range(1, 8))
    before = (run_dir / "metrics.jsonl").read_bytes()
    cmd, kw = _cli([*args, "train.steps=7", "eval.after=true", "name=b", "--resume"], tmp_path, capture_output=True,
                   timeout=600)
    done = subprocess.run(cmd, **kw)
    assert done.returncode == 0 and "already finished its 7 steps: nothing to do" in " ".join(done.stdout.split())
    assert (run_dir / "metrics.jsonl").read_bytes() == before


def test_metrics_are_trimmed_to_the_checkpoints_line_count(tmp_path):
    """The final evaluation shares the last checkpoint's step: only the line count tells it from a periodic one."""
    from rlreason.run.checkpoint import trim_metrics

    records = [{"kind": "train", "step": 1}, {"kind": "eval", "step": 1}, {"kind": "train", "step": 2},
               {"kind": "eval", "step": 2}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"kind": "tr')
    trim_metrics(tmp_path, 2, lines=3)  # checkpoint after step 2's line, before the final evaluation
    assert [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == records[:3]
    trim_metrics(tmp_path, 1)  # an older checkpoint without a line count: by step
    assert [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == records[:2]


def test_a_checkpoint_written_before_a_field_existed_still_resumes():
    """A field added since the checkpoint was written (here rollout.dtype) takes its default: no refusal; a real
    change is still named."""
    from rlreason.run.checkpoint import recipe_changes
    from rlreason.recipe import load_config

    current = load_config(None, []).model_dump(mode="json")
    saved = json.loads(json.dumps(current))
    del saved["rollout"]["dtype"]
    assert recipe_changes(saved, current) == []
    saved["rollout"]["group_size"] = 4
    assert recipe_changes(saved, current) == ["rollout.group_size: 4 -> 8"]


def _running(tmp_path, name):
    """A long run started in the background, once it has done two steps; and every process it started."""
    cmd, kw = _cli([*SMALL, "train.steps=500", "train.checkpoint_every=100", f"name={name}"], tmp_path,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = subprocess.Popen(cmd, **kw)
    metrics = tmp_path / "runs" / name / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)  # (the signal then lands as step 3 generates: polled at 0.2 s it could land during the
        # learner's update of step 3, which cannot be checkpointed as step 2 any more: no checkpoint, a flaky fail)
    family = [c.pid for c in psutil.Process(run.pid).children(recursive=True)]
    assert family  # Ray, its workers, the engine and learner actors, the scorer's processes
    return run, family


def _all_gone(family, timeout):
    deadline = time.monotonic() + timeout
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in family):
        assert time.monotonic() < deadline, "processes left behind"
        time.sleep(0.5)


@pytest.mark.parametrize("stop", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM])  # one path
def test_ctrl_c_or_sigterm_finishes_the_step_in_flight_checkpoints_it_and_leaves_no_process_behind(tmp_path, stop):
    run, family = _running(tmp_path, "i")
    done = len(_train_lines(tmp_path / "runs" / "i"))  # steps done when the signal lands: the next one is in flight
    run.send_signal(stop)
    out, err = run.communicate(timeout=300)
    steps = len(_train_lines(tmp_path / "runs" / "i"))
    checkpoints = list((tmp_path / "runs" / "i" / "checkpoints").glob("step-*"))
    assert len(checkpoints) == 1 and int(checkpoints[0].name[5:]) == steps, out[-2000:] + err[-2000:]
    assert steps > done, (done, steps)  # the step in flight was finished and kept, not thrown away
    assert (checkpoints[0] / "COMPLETE").is_file() and "stopping after the step in flight" in err
    _all_gone(family, 60)


def test_a_second_ctrl_c_stops_at_once_and_leaves_no_process_behind(tmp_path):
    run, family = _running(tmp_path, "j")
    run.send_signal(signal.SIGINT)
    time.sleep(0.3)  # the orderly stop (checkpoint, model, shut-down) has begun
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130 and "second interrupt: stopping at once" in err, out[-2000:] + err[-2000:]
    _all_gone(family, 30)


def _learner_step(learner, batch):
    return learner.train_step(batch).metrics


def test_a_restored_learner_takes_exactly_the_step_the_original_takes(tmp_path):
    """In-process, for every policy kind: full weights; LoRA with one adapter per phase, anchor and continual
    backprop (the most state there is)."""
    import torch
    from batches import good_and_bad_groups
    from transformers import AutoTokenizer

    from rlreason.batching import build_train_batch
    from rlreason.recipe import load_config
    from rlreason.learner.learner import Learner

    for overrides in ([], ["model.lora.rank=4", "train.lr=0.003", "continual.adapters=per_phase",
                           "continual.phases=[{task: addition, steps: 1}, {task: programs, steps: 1}]",
                           "continual.anchor=true", "algorithm.kl_coef=0.05", "continual.cbp_every=1",
                           "continual.cbp_maturity=0", "train.minibatches=2"]):
        cfg = load_config(None, overrides)
        original = Learner(cfg)
        batch = build_train_batch(good_and_bad_groups(AutoTokenizer.from_pretrained(original.policy.path), 6),
                                  original.algo)
        _learner_step(original, batch)
        if cfg.model.uses_lora:
            original.new_phase()
            original.set_anchor()
            _learner_step(original, batch)
        original.save_checkpoint(str(tmp_path))
        saved_rng = torch.get_rng_state()
        restored = Learner(cfg)  # (in one process both share torch's generator: each step starts from the saved one)
        assert restored.load_checkpoint(str(tmp_path)) == original.version
        assert torch.equal(torch.get_rng_state(), saved_rng)  # the checkpoint's generator state is restored
        a = _learner_step(original, batch)
        torch.set_rng_state(saved_rng)
        b = _learner_step(restored, batch)
        assert a == {**b, "learner_time_s": a["learner_time_s"]}
        for (n, p), (_, q) in zip(original.model.named_parameters(), restored.model.named_parameters()):
            assert torch.equal(p, q), n
