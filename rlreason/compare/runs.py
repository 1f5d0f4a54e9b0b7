"""A finished run read back from its directory: which algorithm and seed, and its curves (per step: reward,
generated tokens and compute seconds so far; per evaluation: held-out accuracy)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class RunRecord:
    path: Path
    algorithm: str
    seed: int
    task: str  # the held-out task the curves follow (the recipe's first eval task)
    steps: list[int]
    reward: list[float]
    tokens: list[float]  # cumulative generated tokens after each step
    seconds: list[float]  # cumulative step time (generation + training + sync; evaluation excluded)
    eval_steps: list[int]
    eval_accuracy: list[float]
    wall_s: float

    def at_step(self, series: list[float], step: int) -> float:
        """A cumulative series' value after ``step`` (0 before the first)."""
        return 0.0 if step <= 0 else series[min(step, len(series)) - 1]

    @property
    def final_accuracy(self) -> float:
        return self.eval_accuracy[-1]


def finished(run_dir: Path) -> bool:
    return (run_dir / "summary.json").is_file() and (run_dir / "metrics.jsonl").is_file()


def load_run(run_dir: Path) -> RunRecord:
    """ValueError naming the directory when it is not a finished run with held-out evaluations."""
    run_dir = Path(run_dir)
    if not finished(run_dir) or not (run_dir / "recipe.yaml").is_file():
        raise ValueError(f"{run_dir}: not a finished run (needs recipe.yaml, metrics.jsonl, summary.json)")
    try:
        return _read(run_dir)
    except (KeyError, IndexError, TypeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{run_dir}: not a training run this report can read ({type(e).__name__}: {e})") from None


def _read(run_dir: Path) -> RunRecord:
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    task = recipe["tasks"]["eval"][0]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval" and f"{task}/accuracy" in r]
    if not train or not evals:
        raise ValueError(f"{run_dir}: no training steps or no held-out evaluation of {task!r} in metrics.jsonl")
    per_step = recipe["rollout"]["prompts_per_step"] * recipe["rollout"]["group_size"]
    tokens, seconds, t, s = [], [], 0.0, 0.0
    for r in train:
        # (not r.get(key, default): the default is evaluated first, and a run without completion_len failed)
        t += r["rollout_tokens"] if "rollout_tokens" in r else r["completion_len"] * per_step
        s += r["step_time_s"]
        tokens.append(t)
        seconds.append(s)
    summary = json.loads((run_dir / "summary.json").read_text())
    return RunRecord(path=run_dir, algorithm=recipe["algorithm"]["name"], seed=int(recipe["seed"]), task=task,
                     steps=[r["step"] for r in train], reward=[r["reward_mean"] for r in train], tokens=tokens,
                     seconds=seconds, eval_steps=[r["step"] for r in evals],
                     eval_accuracy=[r[f"{task}/accuracy"] for r in evals], wall_s=float(summary.get("wall_s", 0)))
