"""Scale-out pieces on this machine, one run after another: weight pushes through Ray's object store against a
collective broadcast (gloo here), and one learner against a data-parallel group of two.

    python -m benchmarks.scaleout [--models tiny,107m] [--steps 4] [--out FILE.json]

Each configuration is a real ``rlreason train`` (the 107M model is the race's random-init Llama of SmolLM2-135M's
shape, 4 prompts x 8 x 64 tokens). Prints a Markdown table of medians after the first step: seconds per push
(learner export to every engine serving), bytes per push, the push's share of the step, the learner's seconds per
update, seconds per step; and the largest |learner - engine| logprob gap on sampled tokens (0 within float noise
means the pushed weights are served). On 2 cores two learners share the cores one would use: the group's numbers
here measure its overhead, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = {
    "object store, 1 learner": ["rollout.push=object_store"],
    "collective (gloo), 1 learner": ["rollout.push=collective"],
    "object store, 2 learners": ["rollout.push=object_store", "train.learners=2"],
    "collective (gloo), 2 learners": ["rollout.push=collective", "train.learners=2"],
}


def model_args(model: str) -> list[str]:
    if model == "tiny":
        return ["rollout.prompts_per_step=32"]
    from benchmarks.race.workloads import llama_107m

    return [f"model.path={llama_107m()}", "rollout.prompts_per_step=4", "rollout.max_tokens=64",
            "rollout.ignore_eos=true", "model.max_model_len=256", "train.micro_batch_size=8"]


def run(model: str, name: str, overrides: list[str], steps: int, workdir: Path) -> dict:
    cmd = [sys.executable, "-m", "rlreason.cli", "train", *model_args(model), *overrides, f"train.steps={steps}",
           f"name={name}", "eval.before=false", "eval.after=false", "output.tensorboard=false",
           "output.save_model=false", "train.checkpoint_every=0", "train.lr=0.0003"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    lines = [json.loads(x) for x in (workdir / "runs" / name / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"][1:]  # after the first step (warm-up)

    def median(key: str) -> float:
        return statistics.median(x[key] for x in train)

    return {"model": model, "config": name, "push_s": median("weight_sync_s"), "push_mib": median(
        "weight_sync_bytes") / 2**20, "push_share": median("weight_sync_s") / median("step_time_s"),
        "learner_s": median("learner_time_s"), "step_s": median("step_time_s"),
        "logprob_gap": max(x["logprob_mismatch"] for x in train)}


def table(results: list[dict]) -> str:
    cols = ["model", "configuration", "push s", "push MiB", "push share of step", "learner s", "step s",
            "max logprob gap"]
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['config']} | {r['push_s']:.3f} | {r['push_mib']:.1f} | "
                     f"{r['push_share']:.1%} | {r['learner_s']:.2f} | {r['step_s']:.2f} | {r['logprob_gap']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,107m")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="rlreason-scaleout-") as tmp:
        for model in args.models.split(","):
            for i, (label, overrides) in enumerate(CONFIGS.items()):
                results.append({**run(model, f"{model}-{i}", overrides, args.steps, Path(tmp)), "config": label})
                print(table(results[-1:]).splitlines()[-1], flush=True)
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
