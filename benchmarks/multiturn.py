"""Multi-turn sampling throughput against single-turn sampling of the same number of tokens, in one run.

    python -m benchmarks.multiturn [--problems 16] [--group 8] [--turns 4] [--turn-tokens 16] [--repeats 3]

One in-process vLLM engine serving the embedded model. Single-turn: every problem's group samples ``turns x
turn_tokens`` tokens in one request (EOS ignored, so every completion has that length). Multi-turn: the same problems
and groups as episodes of ``turns`` model turns of ``turn_tokens`` tokens each, an environment answering every
turn with a short observation (all live episodes advance together, one batch per turn, prefix caching on). Both
sample the same number of tokens; the table gives tokens/s of each and their ratio (the issue's goal: at least 80%),
alternating the two ``--repeats`` times (medians).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

from rlreason.envs import Environment, StepResult


class Relay(Environment):
    """Answers ``turns - 1`` model turns with a short observation, then ends the episode."""

    def __init__(self, turns: int = 4) -> None:
        self.turns, self.seen = turns, 0

    def reset(self, problem):
        return problem.prompt

    def step(self, action):
        self.seen += 1
        if self.seen >= self.turns:
            return StepResult(reward=1.0, done=True)
        return StepResult(observation=" ok\n")


def measure(engine, problems, sampling) -> tuple[float, int]:
    start = time.perf_counter()
    groups = engine.generate(problems, sampling)
    seconds = time.perf_counter() - start
    return seconds, sum(c.sampled for g in groups for c in g)


def main() -> None:
    from rlreason.models.tiny import default_model_path
    from rlreason.rollout.engine import RolloutEngine, SamplingSpec
    from rlreason.rollout.episodes import EpisodeSpec
    from rlreason.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--turn-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    engine = RolloutEngine(default_model_path(), seed=0)
    problems = get_task("arithmetic").eval_problems(args.problems)
    played = [dataclasses.replace(p, meta={"env": {"name": "benchmarks.multiturn:Relay",
                                                   "config": {"turns": args.turns}}}) for p in problems]
    single = SamplingSpec(args.group, args.turns * args.turn_tokens, ignore_eos=True)
    multi = SamplingSpec(args.group, args.turn_tokens, ignore_eos=True,
                         episode=EpisodeSpec(max_turns=args.turns))
    measure(engine, problems, single), measure(engine, played, multi)  # warm-up
    rows = {"single-turn": [], "multi-turn": []}
    for _ in range(args.repeats):
        for name, batch, sampling in (("single-turn", problems, single), ("multi-turn", played, multi)):
            seconds, tokens = measure(engine, batch, sampling)
            rows[name].append((seconds, tokens))
    table = ["| sampling | sampled tokens | seconds (median) | tokens/s | vs single-turn |", "|---|---|---|---|---|"]
    rate = {}
    for name, runs in rows.items():
        seconds = statistics.median(s for s, _ in runs)
        rate[name] = runs[0][1] / seconds
        table.append(f"| {name} | {runs[0][1]} | {seconds:.2f} | {rate[name]:.0f} | "
                     f"{rate[name] / rate['single-turn']:.2f} |")
    text = (f"{args.problems} problems x {args.group} samples; {args.turns} turns x {args.turn_tokens} tokens "
            f"(multi-turn) vs {args.turns * args.turn_tokens} tokens (single-turn); {args.repeats} repeats\n\n"
            + "\n".join(table))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "runs": rows, "tokens_per_s": rate}, f, indent=2)


if __name__ == "__main__":
    main()
