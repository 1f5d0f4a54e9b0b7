"""Synchronous vs asynchronous rollouts on one recipe, several seeds, one run after another on the same machine.

    python benchmarks/sync_vs_async.py [RECIPE] [--seeds 3] [--steps 60] [--staleness 1,2] [--out FILE.json]
                                       [key=value ...]

For each mode and seed, ``rlreason train RECIPE rollout.mode=MODE seed=S ...`` (both modes with token-level TIS,
so they differ only in the pipeline). Prints a Markdown table: training steps per minute (training wall time
only: the sum of ``step_time_s``, evaluations left out), held-out accuracy after training, staleness (mean and
max over steps), the effective sample size of the importance weights (mean and minimum over steps), the share
of step time spent waiting for rollouts, and the engines' time to load a weight push (``weight_load_s``); mean
+- sample std over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(recipe: str, mode: str, staleness: int, seed: int, args, workdir: Path) -> dict:
    name = f"{mode}{staleness}-seed{seed}"
    cmd = [sys.executable, "-m", "rlreason.cli", "train", recipe, *args.overrides, f"rollout.mode={mode}",
           f"rollout.max_staleness={staleness}", "algorithm.tis_mode=token", f"train.steps={args.steps}",
           f"seed={seed}", f"name={name}", "eval.before=false", "output.tensorboard=false",
           "output.save_model=false", "train.checkpoint_every=0"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    run_dir = workdir / "runs" / name
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"]
    summary = json.loads((run_dir / "summary.json").read_text())
    wall = sum(x["step_time_s"] for x in train)
    return {"mode": mode if mode == "sync" else f"async K={staleness}", "seed": seed,
            "steps_per_min": 60 * len(train) / wall, "train_wall_s": wall,
            "accuracy": summary["after"], "staleness_mean": statistics.fmean(x.get("staleness_mean", 0) for x in train),
            "staleness_max": max(x.get("staleness_max", 0) for x in train),
            "ess_mean": statistics.fmean(x["is_ess"] for x in train), "ess_min": min(x["is_ess"] for x in train),
            "ess_seq_min": min(x["is_ess_seq"] for x in train),
            "wait_share": sum(x.get("rollout_wait_s", x["rollout_time_s"]) for x in train) / wall,
            "push_s": statistics.fmean(x["weight_load_s"] for x in train[2:])}


def _mean_sd(values: list[float], digits: int = 3) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} +- {sd:.{digits}f}"


def table(results: list[dict], task: str) -> str:
    cols = ["mode", "seeds", "steps/min", f"{task} accuracy after", "staleness mean / max", "ESS token mean (min)",
            "ESS seq min", "waiting for rollouts", "weight load s"]
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for mode in dict.fromkeys(r["mode"] for r in results):
        rs = [r for r in results if r["mode"] == mode]
        lines.append(" | ".join([
            f"| {mode}", str(len(rs)), _mean_sd([r["steps_per_min"] for r in rs], 1),
            _mean_sd([r["accuracy"][f"{task}/accuracy"] for r in rs]),
            f"{statistics.fmean(r['staleness_mean'] for r in rs):.2f} / {max(r['staleness_max'] for r in rs):.0f}",
            f"{statistics.fmean(r['ess_mean'] for r in rs):.3f} ({min(r['ess_min'] for r in rs):.3f})",
            f"{min(r['ess_seq_min'] for r in rs):.3f}",
            f"{statistics.fmean(r['wait_share'] for r in rs):.0%}",
            f"{statistics.fmean(r['push_s'] for r in rs):.3f} |"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="default")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--staleness", default="1", help="async runs for each of these rollout.max_staleness")
    parser.add_argument("--task", default="arithmetic", help="the held-out task shown")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.overrides = [*args.overrides, f"tasks.eval=[{args.task}]"]
    results = []
    with tempfile.TemporaryDirectory(prefix="rlreason-async-") as tmp:
        for seed in range(args.seeds):  # seed-major: drift of the machine hits both modes alike
            for mode, k in [("sync", 1)] + [("async", int(k)) for k in args.staleness.split(",")]:
                results.append(run(args.recipe, mode, k, seed, args, Path(tmp)))
                print(f"{results[-1]['mode']} seed {seed}: {results[-1]['steps_per_min']:.1f} steps/min",
                      file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    print(table(results, args.task))


if __name__ == "__main__":
    main()
