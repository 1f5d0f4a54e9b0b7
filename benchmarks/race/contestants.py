"""How each contestant is run (its own process tree, one at a time) and what is read back: a ``Result``.

Step times are medians over the steps after ``WARMUP`` (the first ones compile and warm caches); start-up is from
launching the process to the first step's start; peak memory is the whole process tree's RSS, sampled.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.race.workloads import Workload

WARMUP = 2
SEED = [0]  # the trainers' seed of the current round (set by ``python -m benchmarks.race --seeds``)
ROOT = Path(__file__).resolve().parents[2]  # the checkout: ``benchmarks`` importable in the contestants' processes


@dataclass
class Result:
    contestant: str
    workload: str
    step_s: list[float]
    startup_s: float | None = None
    gen_tokens_per_s: float | None = None
    peak_gib: float = 0.0
    accuracy: float | None = None
    phases: dict[str, float] = field(default_factory=dict)  # medians per step after warm-up
    seed: int = 0
    extra: dict[str, float] = field(default_factory=dict)  # weight push size and share of the step

    @property
    def median_step_s(self) -> float:
        return statistics.median(self.step_s[WARMUP:] or self.step_s)


def _tail(values: list) -> list:
    return values[WARMUP:] or values


def run_tree(cmd: list[str], cwd: Path, timeout: float = 3600) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd``; its result and the peak RSS (GiB) of its process tree."""
    from rlreason.report.metrics import tree_rss_bytes

    peak, done = [0], threading.Event()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def watch():
        while not done.wait(0.5):
            peak[0] = max(peak[0], tree_rss_bytes(proc.pid))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate(timeout=timeout)
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}... failed ({proc.returncode}):\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peak[0] / 2**30


def rlreason(w: Workload, steps: int, workdir: Path, bf16: bool = False, overrides: tuple[str, ...] = (),
             label: str | None = None) -> Result:
    """``bf16``: the learner autocasts to bfloat16 (model.dtype), the engines stay float32 (rollout.dtype)."""
    label = label or ("rlreason-bf16" if bf16 else "rlreason")
    name = f"race-{w.name}-{label}-seed{SEED[0]}"
    cmd = [sys.executable, "-m", "rlreason.cli", "train", "default", f"model.path={w.model_dir()}", f"name={name}",
           f"rollout.prompts_per_step={w.prompts}", f"rollout.group_size={w.group}",
           f"rollout.max_tokens={w.max_tokens}", f"rollout.ignore_eos={str(w.ignore_eos).lower()}",
           f"seed={SEED[0]}", f"train.steps={steps}", f"train.lr={w.lr}", "eval.before=false", "eval.after=true",
           "tasks.eval=[arithmetic]", f"tasks.eval_size={w.eval_size}", "output.save_model=false",
           "output.tensorboard=false", "train.checkpoint_every=0", f"output.run={workdir / name}",
           *(["model.dtype=bfloat16", "rollout.dtype=float32"] if bf16 else []), *overrides]
    t0 = time.time()
    _, peak = run_tree(cmd, workdir)
    lines = [json.loads(x) for x in (workdir / name / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"]
    summary = json.loads((workdir / name / "summary.json").read_text())
    tail = _tail(train)
    overlapped = "rollout_wait_s" in tail[0]  # async: generation runs during the update; only waits count
    phases = {"waiting for rollouts" if overlapped else "generation":
              statistics.median(x["rollout_wait_s" if overlapped else "rollout_time_s"] for x in tail),
              "update": statistics.median(x["learner_time_s"] for x in tail),
              "push": statistics.median(x.get("weight_sync_s", 0.0) for x in tail)}  # async: not waited for
    phases["scoring + other"] = statistics.median(x["step_time_s"] for x in tail) - sum(phases.values())
    extra = {} if overlapped else {"push MiB": tail[-1]["weight_sync_bytes"] / 2**20, "push share of step":
                                   phases["push"] / statistics.median(x["step_time_s"] for x in tail)}
    return Result(label, w.name, [x["step_time_s"] for x in train], extra=extra, seed=SEED[0],
                  startup_s=train[0]["time"] - train[0]["step_time_s"] - t0,
                  gen_tokens_per_s=sum(x["rollout_tokens"] for x in tail) / sum(x["rollout_time_s"] for x in tail),
                  peak_gib=peak, accuracy=summary["after"].get("arithmetic/accuracy"), phases=phases)


def trl(w: Workload, steps: int, workdir: Path, vllm: bool = False, bf16: bool = False) -> Result:
    label = ("trl-vllm" if vllm else "trl-hf") + ("-bf16" if bf16 else "")
    out, save = workdir / f"{label}-{w.name}-{SEED[0]}.json", workdir / f"{label}-{w.name}-{SEED[0]}-model"
    cmd = [sys.executable, "-m", "benchmarks.race.trl_grpo", "--workload", w.name, "--steps", str(steps),
           "--t0", str(time.time()), "--out", str(out), "--save", str(save), "--seed", str(SEED[0]),
           *(["--vllm"] if vllm else []),
           *(["--bf16"] if bf16 else [])]
    _, peak = run_tree(cmd, workdir)
    raw = json.loads(out.read_text())
    gen = _tail(raw["gen_s"])
    phases = {"generation": statistics.median(gen)}
    phases["update + other"] = statistics.median(_tail(raw["step_s"])) - phases["generation"]
    return Result(label, w.name, raw["step_s"], startup_s=raw["startup_s"], seed=SEED[0],
                  gen_tokens_per_s=sum(_tail(raw["gen_tokens"])) / sum(gen), peak_gib=peak,
                  accuracy=evaluate(save, w, workdir), phases=phases)


def floor(w: Workload, steps: int, workdir: Path) -> Result:
    out = workdir / f"floor-{w.name}.json"
    _, peak = run_tree([sys.executable, "-m", "benchmarks.race.floor", "--workload", w.name, "--steps", str(steps),
                        "--out", str(out)], workdir)
    raw = json.loads(out.read_text())
    step_s = [g + u for g, u in zip(raw["gen_s"], raw["update_s"])]
    return Result("floor", w.name, step_s, gen_tokens_per_s=sum(_tail(raw["gen_tokens"])) / sum(_tail(raw["gen_s"])),
                  peak_gib=peak, phases={"generation": statistics.median(_tail(raw["gen_s"])),
                                         "update": statistics.median(_tail(raw["update_s"]))})


def evaluate(model_dir: Path, w: Workload, workdir: Path) -> float:
    """Held-out accuracy (pass@1 over 4 samples at temperature 1, as rlreason's own after-training evaluation)
    through ``rlreason eval``: the same evaluator for every contestant."""
    out = workdir / f"eval-{model_dir.name}"
    run_tree([sys.executable, "-m", "rlreason.cli", "eval", str(model_dir), "--task", "arithmetic", "--n", "4",
              "--k", "1", "--limit", str(w.eval_size), "--temperature", "1.0", "--out", str(out)], workdir)
    return json.loads((out / "eval.json").read_text())["tasks"]["arithmetic"]["metrics"]["pass@1"]["mean"]


UNSHARED = ("train.shared_prefix=false", "model.attention=sdpa")
CONTESTANTS = {"rlreason": rlreason, "trl-hf": trl, "trl-vllm": lambda w, s, d: trl(w, s, d, vllm=True),
               "floor": floor,
               # bfloat16 autocast in training, weights and generation in float32, for both sides
               "rlreason-bf16": lambda w, s, d: rlreason(w, s, d, bf16=True),
               "trl-hf-bf16": lambda w, s, d: trl(w, s, d, bf16=True),
               "trl-vllm-bf16": lambda w, s, d: trl(w, s, d, vllm=True, bf16=True),
               # off-policy by one step: generation of the next batch overlaps the update (not run by default)
               "rlreason-async": lambda w, s, d: rlreason(w, s, d, overrides=("rollout.mode=async",),
                                                          label="rlreason-async"),
               "rlreason-bf16-async": lambda w, s, d: rlreason(w, s, d, bf16=True, overrides=("rollout.mode=async",),
                                                               label="rlreason-bf16-async"),
               # ablation (not run by default): the learner without the shared-prefix forward and eager attention
               "rlreason-unshared": lambda w, s, d: rlreason(w, s, d, overrides=UNSHARED, label="rlreason-unshared"),
               "rlreason-bf16-unshared": lambda w, s, d: rlreason(w, s, d, bf16=True, overrides=UNSHARED,
                                                                  label="rlreason-bf16-unshared")}
DEFAULT = ("rlreason", "trl-hf", "trl-vllm", "floor", "rlreason-bf16", "trl-hf-bf16", "trl-vllm-bf16")
