"""Continual learning switches compared on one recipe, over seeds: plain sequential training, replay, replay +
continual backprop, a KL anchor to the previous phase's adapter, and one adapter per phase.

    python benchmarks/continual_variants.py [--recipe continual] [--seeds 3] [--variants A,B] [--out-dir DIR]
        [key=value ...]

Each (variant, seed) runs ``rlreason continual`` in its own process tree, one at a time. Prints a Markdown table:
average final accuracy, forgetting, backward and forward transfer (mean +- sample std over seeds), and the
plasticity metrics of the last step (effective rank, dormant fraction, component gradient norm, KL to the
reference); writes the mean accuracy matrix of each variant as a heatmap into ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "sequential": [],
    "replay 0.25": ["continual.replay_frac=0.25"],
    "replay 0.25 + cbp": ["continual.replay_frac=0.25", "continual.cbp_every=5"],
    "KL anchor 0.05": ["continual.anchor=true", "algorithm.kl_coef=0.05"],
    "adapter per phase": ["continual.adapters=per_phase"],
}
PLASTICITY = ("lora/effective_rank", "lora/dormant_frac", "lora/component_grad_norm_mean", "kl_to_ref")


def run(recipe: str, overrides: list[str], seed: int, workdir: Path) -> dict:
    name = f"s{seed}"
    proc = subprocess.run([sys.executable, "-m", "rlreason.cli", "continual", recipe, *overrides, f"seed={seed}",
                           f"name={name}", "output.tensorboard=false", "output.save_model=false"],
                          cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    run_dir = workdir / "runs" / name
    report = json.loads((run_dir / "continual.json").read_text())
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [s for s in steps if s["kind"] == "train"][-1]
    report["plasticity"] = {k: last.get(k) for k in PLASTICITY}
    return report


def _ms(values, sign: str = "+") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{sign}.3f} +- {sd:.3f}"


def table(results: dict[str, list[dict]]) -> str:
    head = ("| variant | final avg accuracy | forgetting | backward transfer | forward transfer | eff. rank | "
            "dormant | comp. grad norm | KL to ref |")
    lines = [head, "|---" * 9 + "|"]
    for variant, reports in results.items():
        p = [r["plasticity"] for r in reports]
        lines.append(f"| {variant} | {_ms((r['average_accuracy'] for r in reports), '')} | "
                     f"{_ms(r['forgetting'] for r in reports)} | {_ms(r['backward_transfer'] for r in reports)} | "
                     f"{_ms(r['forward_transfer'] for r in reports)} | "
                     + " | ".join(f"{statistics.fmean(x[k] for x in p if x[k] is not None):.3g}"
                                  if any(x[k] is not None for x in p) else "-" for k in PLASTICITY) + " |")
    return "\n".join(lines)


def mean_matrix(reports: list[dict]) -> dict:
    first = reports[0]
    matrix = [[statistics.fmean(r["matrix"][i][j] for r in reports) for j in range(len(first["tasks"]))]
              for i in range(len(first["matrix"]))]
    base = [statistics.fmean(r["base"][j] for r in reports) for j in range(len(first["tasks"]))]
    return {**first, "matrix": matrix, "base": base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--recipe", default="continual")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out-dir", default="continual-report")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    args = parser.parse_args()
    chosen = {v: VARIANTS[v] for v in args.variants.split(",")}
    from rlreason.report.continual_metrics import heatmap

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="rlreason-continual-") as tmp:
        for variant, extra in chosen.items():
            for seed in range(args.seeds):
                work = Path(tmp) / variant.replace(" ", "_").replace("+", "p")
                work.mkdir(exist_ok=True)
                results.setdefault(variant, []).append(run(args.recipe, [*args.overrides, *extra], seed, work))
                print(f"{variant} seed {seed}: {results[variant][-1]['matrix']}", file=sys.stderr)
            slug = variant.replace(" ", "_").replace("+", "plus").replace(".", "")
            heatmap(mean_matrix(results[variant]), out / f"{slug}.png", title=f"{variant} (mean of {args.seeds})")
    text = f"recipe {args.recipe} {' '.join(args.overrides)}, {args.seeds} seeds\n\n{table(results)}"
    print(text)
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
