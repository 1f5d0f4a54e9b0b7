"""Multi-turn sampling throughput against single-turn sampling of the same number of tokens, in one run.

    python -m benchmarks.multiturn [--problems 16] [--group 8] [--shapes 4x16,4x32,3x48] [--repeats 3]

One in-process vLLM engine serving the embedded model. For each shape TURNSxTOKENS: single-turn, every problem's
group samples ``TURNS x TOKENS`` tokens in one request (EOS ignored, so every completion has that length);
multi-turn, the same problems and groups as episodes of ``TURNS`` model turns of ``TOKENS`` tokens each, an
environment answering every turn with a short observation (all live episodes in the engine's running batch, each
next turn joining as soon as its episode's last one ended, prefix caching on). Both sample the same number of
tokens; the table gives tokens/s of each and their ratio, alternating the two ``--repeats`` times (medians).
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
    parser.add_argument("--shapes", default="4x16,4x32,3x48", help="TURNSxTOKENS, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    engine = RolloutEngine(default_model_path(), seed=0)
    problems = get_task("arithmetic").eval_problems(args.problems)
    table = ["| shape (turns x tokens) | sampled tokens | single-turn tokens/s | multi-turn tokens/s | multi / single"
             " |",
             "|---|---|---|---|---|"]
    results = {}
    for shape in args.shapes.split(","):
        turns, tokens = (int(x) for x in shape.lower().split("x"))
        played = [dataclasses.replace(p, meta={"env": {"name": "benchmarks.multiturn:Relay",
                                                       "config": {"turns": turns}}}) for p in problems]
        single = SamplingSpec(args.group, turns * tokens, ignore_eos=True)
        multi = SamplingSpec(args.group, tokens, ignore_eos=True, episode=EpisodeSpec(max_turns=turns))
        measure(engine, problems, single), measure(engine, played, multi)  # warm-up
        runs = {"single": [], "multi": []}
        for _ in range(args.repeats):
            runs["single"].append(measure(engine, problems, single))
            runs["multi"].append(measure(engine, played, multi))
        rate = {k: v[0][1] / statistics.median(s for s, _ in v) for k, v in runs.items()}
        results[shape] = {"runs": runs, "tokens_per_s": rate}
        table.append(f"| {turns} x {tokens} | {runs['single'][0][1]} | {rate['single']:.0f} | {rate['multi']:.0f} | "
                     f"{rate['multi'] / rate['single']:.2f} |")
    text = (f"{args.problems} problems x {args.group} samples, {args.repeats} repeats (medians)\n\n"
            + "\n".join(table))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
