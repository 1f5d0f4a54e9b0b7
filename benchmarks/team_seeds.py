"""Teams over seeds: the evolved coordinator's team against the best single member and the oracle router, per
optimizer (ES and GRPO side by side), on one pool.

    python benchmarks/team_seeds.py [--recipe team] [--seeds 3] [--optimizers es,grpo] [--pool RUN_DIR]
        [--out-dir DIR] [key=value ...]

The pool is trained once (the recipe's ``train:`` members, by the first run, or taken from ``--pool``: a finished
``rlreason team`` run directory whose ``members/`` it reuses); every (optimizer, seed) run then evolves its own
coordinator over that same pool, one run at a time, each in its own process tree. Prints a Markdown table: held-out
mixed accuracy of the best member, the team and the oracle, per task, and turns per episode; mean +- sample std.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(recipe: str, overrides: list[str], name: str, workdir: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "rlreason.cli", "team", recipe, *overrides, f"name={name}",
                           "output.tensorboard=false"], cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads((workdir / "runs" / name / "team.json").read_text())


def pool_overrides(pool: Path) -> str:
    """``team.members`` naming the adapters a finished team run holds (the base model stays a member if it was)."""
    report = json.loads((pool / "team.json").read_text())
    members = ", ".join(f"{{name: {m}}}" if path is None else f"{{name: {m}, adapter: {path}}}"
                        for m, path in report["members"].items())
    return f"team.members=[{members}]"


def _ms(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} +- {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="team")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--optimizers", default="es,grpo")
    parser.add_argument("--pool", type=Path, default=None, help="a finished rlreason team run: reuse its members")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    workdir = args.out_dir or Path(tempfile.mkdtemp(prefix="team-seeds-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pool = args.pool
    rows: dict[str, list[dict]] = {}
    for optimizer in args.optimizers.split(","):
        for seed in range(args.seeds):
            extra = [f"team.coordinator.optimizer={optimizer}", f"seed={seed}"]
            if pool is not None:
                extra.append(pool_overrides(pool.resolve()))
            name = f"{optimizer}-s{seed}"
            report = run(args.recipe, [*args.overrides, *extra], name, workdir)
            pool = pool or workdir / "runs" / name
            rows.setdefault(optimizer, []).append(report)
            print(f"{name}: best member {report['best_member']['name']} {report['best_member']['mixed']:.3f}, "
                  f"team {report['team']['mixed']:.3f}, oracle {report['oracle']['mixed']:.3f}", flush=True)
    tasks = next(iter(rows.values()))[0]["routing"]["tasks"]
    print("\n| coordinator | seeds | best member | team | team - best | oracle | "
          + " | ".join(f"team {t}" for t in tasks) + " | turns |")
    print("|---" * (7 + len(tasks)) + "|")
    for optimizer, reports in rows.items():
        best = [r["best_member"]["mixed"] for r in reports]
        team = [r["team"]["mixed"] for r in reports]
        print(f"| {optimizer} | {len(reports)} | {_ms(best)} | {_ms(team)} | "
              f"{_ms([t - b for t, b in zip(team, best)])} | {_ms([r['oracle']['mixed'] for r in reports])} | "
              + " | ".join(_ms([r["team"]["tasks"][t] for r in reports]) for t in tasks)
              + f" | {_ms([r['team']['turns'] for r in reports])} |")
    print(f"\nruns in {workdir / 'runs'}")


if __name__ == "__main__":
    main()
