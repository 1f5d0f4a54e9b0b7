"""Exact resume for the continual and online drivers, through real processes: a run killed with SIGKILL after a
checkpoint (at a phase boundary, then mid-phase; online: mid-stream) and resumed logs the same metrics and the same
accuracy matrix as the uninterrupted run. The continual run is also the test of ``rlreason continual`` itself:
every switch on, the matrix, the heatmap, the adapters per phase, the merged model."""

import json
import signal
import subprocess
import sys
import time

import pytest

from test_resume import VOLATILE, _wait_for
from test_stream import _rows

SMALL = ["rollout.prompts_per_step=4", "rollout.group_size=4", "output.tensorboard=false", "output.save_model=false",
         "tasks.eval_size=8", "eval.samples=1", "train.checkpoint_every=2"]
# every switch on, so their state must survive the kill too: replay streams, the KL anchor, continual backprop's
# bookkeeping, one adapter per phase; merged at the end
CONTINUAL = ["continual", "continual", "continual.phases=[{task: addition, steps: 3}, {task: subtraction, steps: 3}]",
             "tasks.eval=[addition, subtraction, programs]", "continual.replay_frac=0.25", "continual.anchor=true",
             "algorithm.kl_coef=0.01", "continual.cbp_every=1", "continual.cbp_maturity=0",
             "continual.adapters=per_phase", "continual.merge=true", *SMALL]


def _lines(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in x.items() if k not in VOLATILE} for x in lines]


def _killed_after(cmd, tmp_path, checkpoint):
    """Run ``cmd`` until ``checkpoint`` is complete, then SIGKILL the driver (its watchdog reaps the rest)."""
    victim = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(checkpoint / "COMPLETE", victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    time.sleep(2)  # (the watchdog's sweep)


@pytest.mark.parametrize("kills", [(3,), pytest.param((3, 4), marks=pytest.mark.slow)],
                         ids=["phase-boundary", "phase-boundary-then-mid-phase"])
def test_a_continual_run_killed_at_a_phase_boundary_and_mid_phase_resumes_exactly(tmp_path, kills):
    cli = [sys.executable, "-m", "rlreason.cli"]
    whole = subprocess.run([*cli, *CONTINUAL, "name=a"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    b = tmp_path / "runs" / "b"
    for i, step in enumerate(kills):  # step 3 ends phase 1; step 4 is mid-phase
        resume = ["--resume"] if i else []
        _killed_after([*cli, *CONTINUAL, "name=b", *resume], tmp_path, b / "checkpoints" / f"step-{step:06d}")
    last = subprocess.run([*cli, *CONTINUAL, "name=b", "--resume"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert last.returncode == 0, last.stderr[-3000:]
    evaluated = {3: 1, 4: 1}[kills[-1]]
    assert (f"resuming from step-{kills[-1]:06d}: step {kills[-1]} done, {evaluated} phase(s) evaluated"
            in " ".join(last.stdout.split()))
    a = tmp_path / "runs" / "a"
    assert _lines(b) == _lines(a), "the resumed run's metrics differ from the uninterrupted run's"
    report_a, report_b = (json.loads((d / "continual.json").read_text()) for d in (a, b))
    assert report_b["matrix"] == report_a["matrix"] and report_b["base"] == report_a["base"]
    # every task of tasks.eval is a column: one no phase trains is watched
    assert report_a["tasks"] == ["addition", "subtraction", "programs"] and list(report_a["watched"]) == ["programs"]
    assert report_a["forgetting"] is not None and report_a["forward_transfer"] is not None
    assert all(0.0 <= v <= 1.0 for row in report_a["matrix"] for v in row) and len(report_a["matrix"]) == 2
    assert "held-out accuracy after each phase" in whole.stdout and "watched, never trained" in whole.stdout
    train = [x for x in _lines(a) if x["kind"] == "train"]
    assert [x["phase"] for x in train] == [0.0] * 3 + [1.0] * 3 and train[-1]["cbp/replaced"] > 0
    for run in (a, b):
        assert (run / "continual.png").read_bytes()[:4] == b"\x89PNG"
        assert (run / "final" / "phases" / "phase2" / "adapter_model.safetensors").is_file()
        assert (run / "final-merged" / "config.json").is_file()


def test_an_online_run_killed_mid_stream_resumes_its_model_and_stream_exactly(tmp_path):
    stream = tmp_path / "stream.jsonl"
    stream.write_text("\n".join([*_rows(0, 24), json.dumps({"end": True})]) + "\n")
    args = [sys.executable, "-m", "rlreason.cli", "train", f"tasks.stream={stream}", "train.steps=null",
            "eval.before=false", "eval.after=false", *SMALL]
    whole = subprocess.run([*args, "name=a"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    b = tmp_path / "runs" / "b"
    _killed_after([*args, "name=b"], tmp_path, b / "checkpoints" / "step-000004")
    resumed = subprocess.run([*args, "name=b", "--resume"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from step-000004" in resumed.stdout
    a = tmp_path / "runs" / "a"
    assert [x["step"] for x in _lines(b) if x["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert _lines(b) == _lines(a), "the resumed run's metrics differ from the uninterrupted run's"
    trained = [(d / "problems.jsonl").read_text() for d in (a, b)]
    assert trained[0] == trained[1]  # the same problems at the same steps: nothing twice, nothing skipped
