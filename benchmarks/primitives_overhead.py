"""What writing the loop yourself costs: the GRPO loop on the primitive API (``rlreason/api/grpo_loop.py``) against
``rlreason train`` on the same recipe and seed, seconds per step (the first step left out: warm-up), and whether
the two computed the same numbers.

    python benchmarks/primitives_overhead.py [--steps 10] [key=value ...]

Each run in its own process, one after the other; full weights, then LoRA. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = {"full weights": [], "LoRA rank 8": ["model.lora.rank=8", "train.lr=0.002"]}
QUIET = ["eval.before=false", "eval.after=false", "output.save_model=false", "train.checkpoint_every=0",
         "output.tensorboard=false"]
LOOP = ("import json, sys; from rlreason.api.grpo_loop import main; "
        "print('HISTORY ' + json.dumps(main(sys.argv[1:])))")


def trained(overrides: list[str], workdir: Path) -> list[dict]:
    run = workdir / "trained"
    proc = subprocess.run([sys.executable, "-m", "rlreason.cli", "train", *overrides, f"output.run={run}"],
                          cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == "train"]


def looped(overrides: list[str], workdir: Path) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", LOOP, *overrides, f"output.run={workdir / 'loop'}"],
                          cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.split("HISTORY ")[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    args, extra = parser.parse_known_args()
    print("| policy | rlreason train s/step | primitives loop s/step | loop / train | same rewards, losses, "
          "grad norms |\n|---|---|---|---|---|")
    for mode, overrides in MODES.items():
        every = [f"train.steps={args.steps}", *QUIET, *overrides, *extra]
        with tempfile.TemporaryDirectory() as tmp:
            train, loop = trained(every, Path(tmp)), looped(every, Path(tmp))
        t = statistics.fmean(x["step_time_s"] for x in train[1:])
        mine = statistics.fmean(x["step_time_s"] for x in loop[1:])
        same = all(a["reward_mean"] == b["reward_mean"] and abs(a["loss"] - b["loss"]) < 1e-6
                   and abs(a["grad_norm"] - b["grad_norm"]) <= 1e-4 * abs(a["grad_norm"]) for a, b in zip(train, loop))
        print(f"| {mode} | {t:.2f} | {mine:.2f} | {mine / t:.2f} | {'yes' if same else 'NO'} "
              f"({len(train)} steps) |", flush=True)


if __name__ == "__main__":
    main()
