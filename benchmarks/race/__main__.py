"""The speed race: rlreason against TRL's GRPOTrainer and a plain floor, same workloads, one machine, one run.

    python -m benchmarks.race [--quick] [--workloads tiny,107m] [--contestants rlreason,trl-hf,...] [--out F]

Every contestant runs as its own process tree, one after another (two cores: never two at once), on the same
model, prompts, group size, completion length, learning rate and number of steps, in float32 and with bfloat16
autocast in training (``-bf16``: weights and generation stay float32, for both sides). Prints a Markdown table
(seconds per step as the median after warm-up, the ratio to rlreason, start-up to the first step, generation
tokens/s, peak memory of all processes, held-out accuracy after training through the same evaluator) and a
per-phase breakdown; writes every number as JSON. ``--quick`` runs fewer steps (under 10 minutes for the tiny
workload's four contestants on 2 cores).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from benchmarks.race.contestants import CONTESTANTS, DEFAULT, SEED, Result
from benchmarks.race.workloads import WORKLOADS


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def table(results: list[Result]) -> str:
    lines = ["| workload | contestant | seed | s/step | rlreason's speed-up (same precision) | start-up s | "
             "gen tok/s | peak GiB | held-out accuracy |", "|---" * 9 + "|"]
    for r in results:
        mine = "rlreason-bf16" if r.contestant.endswith("-bf16") else "rlreason"  # same precision
        ours = next((x for x in results if (x.workload, x.contestant, x.seed) == (r.workload, mine, r.seed)), None)
        ratio = ours and r.median_step_s / ours.median_step_s
        lines.append(f"| {r.workload} | {r.contestant} | {r.seed} | {r.median_step_s:.2f} | {_fmt(ratio, '{:.2f}x')} | "
                     f"{_fmt(r.startup_s, '{:.1f}')} | {_fmt(r.gen_tokens_per_s, '{:.0f}')} | {r.peak_gib:.1f} | "
                     f"{_fmt(r.accuracy, '{:.3f}')} |")
    lines += ["", "| workload | contestant | per-phase medians, s |", "|---|---|---|"]
    lines += [f"| {r.workload} | {r.contestant} | " + ", ".join(f"{k} {v:.2f}" for k, v in r.phases.items()) + " |"
              for r in results]
    lines += [""] + [f"- {r.workload}/{r.contestant}: " + ", ".join(f"{k} {v:.3g}" for k, v in r.extra.items())
                     for r in results if r.extra]
    for r in results:
        floor = next((x for x in results if x.workload == r.workload and x.contestant == "floor"), None)
        if r.contestant in ("rlreason", "rlreason-bf16") and floor and r.gen_tokens_per_s and floor.gen_tokens_per_s:
            lines.append(f"- {r.workload}/{r.contestant}: rollouts at {r.gen_tokens_per_s / floor.gen_tokens_per_s:.0%}"
                         " of bare vLLM's tokens/s (same prompts, sampling and threads)")
    return "\n".join(lines)


def _sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def over_seeds(results: list[Result]) -> str:
    """Per workload and contestant: s/step and held-out accuracy, mean +- sd over the seeds."""
    lines = ["", "| workload | contestant | seeds | s/step | held-out accuracy |", "|---|---|---|---|---|"]
    keys = dict.fromkeys((r.workload, r.contestant) for r in results)
    for workload, contestant in keys:
        runs = [r for r in results if (r.workload, r.contestant) == (workload, contestant)]
        steps, accs = [r.median_step_s for r in runs], [r.accuracy for r in runs if r.accuracy is not None]
        acc = f"{statistics.fmean(accs):.3f} +- {_sd(accs):.3f}" if accs else "-"
        lines.append(f"| {workload} | {contestant} | {len(runs)} | {statistics.fmean(steps):.2f} +- "
                     f"{_sd(steps):.2f} | {acc} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workloads", default="tiny,107m")
    parser.add_argument("--contestants", default=",".join(DEFAULT))
    parser.add_argument("--out", default="race.json")
    parser.add_argument("--seeds", type=int, default=1, help="rounds with seeds 0..N-1 (accuracy: mean and sd)")
    args = parser.parse_args()
    results, failures = [], []
    with tempfile.TemporaryDirectory(prefix="rlreason-race-") as tmp:
        for name in args.workloads.split(","):
            w = WORKLOADS[name]
            w.model_dir()  # built before any clock starts
            steps = w.quick_steps if args.quick else w.steps
            for SEED[0], contestant in itertools.product(range(args.seeds), args.contestants.split(",")):
                print(f"{name}: {contestant}, {steps} steps, seed {SEED[0]}...", file=sys.stderr, flush=True)
                try:
                    results.append(CONTESTANTS[contestant](w, steps, Path(tmp)))
                except RuntimeError as e:  # one contestant failing does not lose the others' numbers
                    failures.append(f"{name}/{contestant}: {str(e).strip().splitlines()[-1][:300]}")
                    print(f"  failed: {failures[-1]}", file=sys.stderr)
    Path(args.out).write_text(json.dumps({"results": [asdict(r) for r in results], "failures": failures},
                                         indent=2))
    print(table(results))
    if args.seeds > 1:
        print(over_seeds(results))
    for failure in failures:
        print(f"\nfailed: {failure}")


if __name__ == "__main__":
    main()
