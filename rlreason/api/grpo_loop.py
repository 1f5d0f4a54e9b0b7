"""GRPO written on the primitive API: the loop of ``rlreason train`` (sync, one optimizer step a step) in twenty
lines. On the same recipe and seed it computes the same numbers (tests/test_api.py checks that).

    python -m rlreason.api.grpo_loop [RECIPE] [section.field=value ...]
"""

from __future__ import annotations

import statistics
import sys
import time

import rlreason
from rlreason import Datum


def grpo(rl, steps: int, prompts: int, group_size: int) -> list[dict]:
    problems, history = rl.problems(), []
    for step in range(1, steps + 1):
        start = time.perf_counter()
        batch_problems = [next(problems) for _ in range(prompts)]
        groups = rl.sample(batch_problems, n=group_size, seed=step)  # (rlreason train samples step k with seed k)
        batch, rewards = [], []
        for g, (problem, samples) in enumerate(zip(batch_problems, groups)):
            scores = rl.score(problem, samples)
            mean, std = statistics.fmean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0
            for sample, reward in zip(samples, scores):
                advantage = 0.0 if len(set(scores)) == 1 else (reward - mean) / (std + 1e-6)
                batch.append(Datum.from_sample(sample, advantage, group=g))
            rewards += scores
        out = rl.forward_backward(batch, loss="grpo")  # the registered algorithm's loss, normalised as train does
        stats = rl.optim_step()  # the recipe's learning rate and schedule
        rl.sync()  # the next step samples from the new weights
        history.append({"step": step, "reward_mean": statistics.fmean(rewards), "loss": out.loss,
                        "grad_norm": stats["grad_norm"], "step_time_s": time.perf_counter() - start})
        print(f"step {step}  reward {history[-1]['reward_mean']:.3f}  loss {out.loss:+.4f}  "
              f"grad_norm {stats['grad_norm']:.3f}", flush=True)
    return history


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    recipe = argv[0] if argv and "=" not in argv[0] else None
    with rlreason.connect(recipe=recipe, overrides=[a for a in argv if "=" in a]) as rl:
        r = rl.cfg.rollout
        return grpo(rl, rl.cfg.train.steps, r.prompts_per_step, r.group_size)


if __name__ == "__main__":
    main()
