"""A population of N LoRA adapters evaluated in one vLLM engine at once, against N sequential weight loads of the
same members (push member i as the served adapter, generate, next), on the same problems and sampling.

    python -m benchmarks.es_population [--model tiny] [--sizes 4,8,16] [--problems 8] [--samples 2]
                                       [--max-tokens 32] [--rank 8] [--out FILE.json]

One in-process engine (the rollout worker's class), the members built from seeds around one adapter exactly as an
ES generation builds them. Prints a Markdown table: seconds for the population at once, seconds for the
sequential loads (load + generate per member), the ratio, and generated tokens/s of each.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def measure(engine, learner, problems, sampling, size: int, sigma: float) -> dict:
    from rlreason.algorithms.es import member_seeds, perturbed
    from rlreason.types import WeightUpdate

    members = member_seeds(0, size, size, antithetic=True)
    base = learner.export_weights()
    engine.load_weights(WeightUpdate(version=engine.version + 1, kind="lora", payload=base.payload,
                                     nbytes=base.nbytes))
    start = time.perf_counter()
    together = engine.generate_population(problems, sampling, members, sigma)
    at_once = time.perf_counter() - start
    tokens_once = sum(len(c.completion_ids) for groups in together for g in groups for c in g)
    mean = base.payload["tensors"]
    start, tokens_seq = time.perf_counter(), 0
    for seed, sign in members:
        payload = {"config": base.payload["config"], "tensors": perturbed(mean, seed, sign, sigma)}
        engine.load_weights(WeightUpdate(version=engine.version + 1, kind="lora", payload=payload, nbytes=0))
        tokens_seq += sum(len(c.completion_ids) for g in engine.generate(problems, sampling) for c in g)
    sequential = time.perf_counter() - start
    return {"members": size, "at_once_s": at_once, "sequential_s": sequential, "ratio": sequential / at_once,
            "tokens_per_s_at_once": tokens_once / at_once, "tokens_per_s_sequential": tokens_seq / sequential}


def table(rows: list[dict]) -> str:
    lines = ["| members | at once s | sequential loads s | sequential / at once | tok/s at once | tok/s sequential |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['members']} | {r['at_once_s']:.2f} | {r['sequential_s']:.2f} | {r['ratio']:.2f}x | "
                     f"{r['tokens_per_s_at_once']:.0f} | {r['tokens_per_s_sequential']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--sizes", default="4,8,16")
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from rlreason.recipe import load_config
    from rlreason.learner.learner import Learner
    from rlreason.rollout.engine import RolloutEngine, SamplingSpec
    from rlreason.tasks import get_task

    sizes = [int(s) for s in args.sizes.split(",")]
    cfg = load_config(None, [f"model.path={args.model}", f"model.lora.rank={args.rank}"])
    learner = Learner(cfg)
    engine = RolloutEngine(cfg.model.resolved_path(), seed=0, lora_rank=args.rank, max_loras=max(sizes) + 2)
    problems = [p for p, _ in zip(get_task("arithmetic").train_problems(seed=1), range(args.problems))]
    sampling = SamplingSpec(n=args.samples, max_tokens=args.max_tokens, ignore_eos=True)
    measure(engine, learner, problems, sampling, 2, args.sigma)  # warm-up (kernels, first adapter loads)
    rows = [measure(engine, learner, problems, sampling, size, args.sigma) for size in sizes]
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
