"""Held-out accuracy before and after training, over several seeds: mean, spread and every seed's value.

    python benchmarks/heldout_seeds.py RECIPE [--seeds 3] [--out FILE.json] [key=value ...]

Runs ``rlreason train RECIPE seed=S key=value ...`` for S = 0..seeds-1, one after another (one process tree at a
time), and prints a Markdown table of every held-out metric: before and after as mean +- sample std over seeds,
the change, and how many seeds improved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_seed(recipe: str, seed: int, overrides: list[str], workdir: Path) -> dict:
    name = f"seed{seed}"
    cmd = [sys.executable, "-m", "rlreason.cli", "train", recipe, *overrides, f"seed={seed}", f"name={name}",
           "output.tensorboard=false", "output.save_model=false", "train.checkpoint_every=0"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
    return json.loads((workdir / "runs" / name / "summary.json").read_text())


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} +- {sd:.3f}"


def table(summaries: list[dict]) -> str:
    lines = ["| metric | before | after | change | seeds improved | per seed (before -> after) |", "|---" * 6 + "|"]
    for key in sorted(summaries[0]["after"]):
        before = [s["before"][key] for s in summaries]
        after = [s["after"][key] for s in summaries]
        change = [a - b for a, b in zip(after, before)]
        seeds = ", ".join(f"{b:.3f}->{a:.3f}" for b, a in zip(before, after))
        lines.append(f"| {key} | {_mean_sd(before)} | {_mean_sd(after)} | {statistics.fmean(change):+.3f} | "
                     f"{sum(c > 0 for c in change)}/{len(change)} | {seeds} |")
    wall = statistics.fmean(s["wall_s"] for s in summaries)
    lines.append(f"\n{len(summaries)} seeds, {summaries[0]['steps']} steps each, mean wall {wall:.0f} s, "
                 f"peak memory {max(s['peak_memory_gib'] for s in summaries):.2f} GiB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rlreason-seeds-") as tmp:
        summaries = []
        for seed in range(args.seeds):
            summaries.append(run_seed(args.recipe, seed, args.overrides, Path(tmp)))
            print(f"seed {seed}: {summaries[-1]['before']} -> {summaries[-1]['after']}", file=sys.stderr)
    print(f"recipe {args.recipe} {' '.join(args.overrides)}\n")
    print(table(summaries))
    if args.out:
        Path(args.out).write_text(json.dumps(summaries, indent=2))


if __name__ == "__main__":
    main()
