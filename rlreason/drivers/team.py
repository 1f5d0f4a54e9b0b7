"""``rlreason team``: evolve a coordinator that routes a pool of models turn by turn (TRINITY, arXiv 2512.04695).

Its own small driver over the shared stages: the engines serve every member at once (``serve_team``); every episode
is a ``team`` environment episode (``rlreason.envs.team``) through the one episode loop; the problems' own verifiers
score the final answers. The coordinator's head lives here: ES (``es``) plays a population of heads perturbed from
seeds (only seeds and the mean travel; the noise is regenerated where the episode runs) and moves the mean by their
rank-normalised rewards (``rlreason.algorithms.es``); GRPO (``grpo``) samples the choices, takes group-relative
advantages and follows the policy gradient of the choices' log-probabilities. Before and after: each member alone,
the oracle router (the best member per problem), the team, the routing matrix.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from rlreason.algorithms.es import member_seeds, normalized, update
from rlreason.controller import Context, fitting, gathered, problem_stream, reseed_engines, \
    sampling_spec, score, step_seed, take_fitting
from rlreason.envs.coordinator import HEAD, Encoder, head_shape, policy_gradient
from rlreason.evaluation.heldout import eval_problems
from rlreason.recipe import RunConfig
from rlreason.rollout.recovery import on_workers
from rlreason.tasks import get_task
from rlreason.types import Problem, ScoredGroup


class TeamRun:
    """The pool as served, the episode configuration, and the generate call every stage of the driver uses."""

    def __init__(self, ctx: Context, pool: dict[str, str | None]) -> None:
        from rlreason.models.info import hidden_size

        self.ctx, self.pool, cfg = ctx, pool, ctx.cfg
        self.names = list(pool)
        self.roles = [r.model_dump() for r in cfg.team.roles]
        self.answering = next((r.name for r in cfg.team.roles if r.answers), cfg.team.roles[0].name)
        self.encoder = str(Path(cfg.team.coordinator.encoder or cfg.model.resolved_path()).resolve())
        self.shape = head_shape(hidden_size(self.encoder) + 1, self.names, [r["name"] for r in self.roles])
        stream = problem_stream(cfg)  # (the coordinator's first training prompts: what its transcripts share)
        self.center = Encoder.of(self.encoder).center([next(stream).prompt for _ in range(64)])
        Encoder.release(self.encoder)  # (the engines hold their own)
        self.base = {"members": self.names, "roles": self.roles, "max_turns": cfg.team.max_turns,
                     "encoder": self.encoder, "center": self.center.tolist()}

    def episodes(self, problems: list[Problem], configs: list[dict], n: int, temperature: float | None = None,
                 seeds: list[int] | None = None) -> list[ScoredGroup]:
        """``n`` team episodes of each problem, problem i under episode config ``configs[i]`` (and sampling seed
        ``seeds[i]``); scored."""
        played = [replace(p, meta={**p.meta, "env": {"name": "team", "config": {**self.base, **c}}})
                  for p, c in zip(problems, configs)]
        sampling = sampling_spec(self.ctx.cfg, n, temperature)  # (the team's turn budget ends its episodes, not
        sampling = replace(sampling, episode=replace(sampling.episode, max_turns=self.ctx.cfg.team.max_turns + 1))
        # the loop's env.max_turns)
        workers, pool = len(self.ctx.workers), self.pool

        def call(chunk, chunk_seeds):
            def send(worker):  # (a restarted worker serves the pool again before it plays)
                worker.serve_team.remote(pool)
                worker.resume_serving.remote()
                return worker.generate.remote(chunk, sampling, None, chunk_seeds)
            return send

        calls = {i: call(played[i::workers], None if seeds is None else seeds[i::workers])
                 for i in range(workers) if played[i::workers]}
        done = gathered(played, workers, on_workers(self.ctx, calls))
        episodes = [c.episode for _, group in done for c in group]
        if episodes and all(e.failed for e in episodes):  # (a coordinator that cannot start: say so, not 0s)
            raise RuntimeError(f"every team episode failed; the first: {episodes[0].error}")
        return score(self.ctx, [(p, group) for p, (_, group) in zip(problems, done)])  # (scored as the task's own)

    def alone(self, member: str) -> dict:
        return {"fixed": [[member, self.answering]]}


def evaluate_config(run: TeamRun, problems: dict[str, list[Problem]], config: dict) -> dict:
    """Held-out results of one way of playing (a member alone, or a head): per task accuracy, each problem's mean
    score, the routing (first choice and every choice), turns and tokens per episode. Paired: every way of playing
    samples held-out problem k with the same seeds, so a team that routes a problem to a member gets exactly that
    member's answers there, and team, members and oracle differ by their routes, not by sampling luck."""
    cfg, out = run.ctx.cfg, {"tasks": {}, "per_problem": {}, "task_of": {}, "routing": {}, "turns": [], "tokens": []}
    for t, (task, items) in enumerate(problems.items()):
        seeds = [s + t * 1_000_003 for s in common_seeds(cfg, 0, len(items))]  # (generation 0: held out)
        groups = run.episodes(items, [config] * len(items), cfg.eval.samples, cfg.eval.temperature, seeds)
        out["tasks"][task] = statistics.fmean(r.correct for g in groups for r in g.results) if groups else 0.0
        for g in groups:
            out["per_problem"][g.problem.id] = statistics.fmean(r.correct for r in g.results)
            out["task_of"][g.problem.id] = task
            routes = out["routing"].setdefault(task, {})
            for c in g.completions:
                for member, role in c.episode.info.get("choices", []):
                    routes[f"{member}/{role}"] = routes.get(f"{member}/{role}", 0) + 1
                out["turns"].append(len(c.episode.info.get("choices", [])))
                out["tokens"].append(c.sampled)
    out["mixed"] = statistics.fmean(out["per_problem"].values()) if out["per_problem"] else 0.0
    out["turns"], out["tokens"] = statistics.fmean(out["turns"] or [0]), statistics.fmean(out["tokens"] or [0])
    return out


def common_seeds(cfg: RunConfig, generation: int, n: int) -> list[int]:
    """Problem k's sampling seed in a generation, the same for every candidate head (common random numbers: where
    two heads route a problem alike, its answers are the same, so their rewards differ by their routes)."""
    base = step_seed(cfg.seed, generation, 0, "team") % 2**30
    return [base + k * 1000 for k in range(n)]


def es_generation(run: TeamRun, mean: torch.Tensor, problems: list[Problem], generation: int
                  ) -> tuple[torch.Tensor, dict]:
    cfg, c = run.ctx.cfg, settings(run.ctx.cfg)
    members = member_seeds(cfg.seed, generation, c.population, antithetic=True)
    head = mean.tolist()
    configs = [{"head": head, "seed": s, "sign": sign, "sigma": c.sigma} for s, sign in members]
    groups = run.episodes(problems * len(members), [k for k in configs for _ in problems], c.samples,
                          cfg.eval.temperature, common_seeds(cfg, generation, len(problems)) * len(members))
    n = len(problems)
    rewards = [statistics.fmean(s for g in groups[k * n:(k + 1) * n] for s in g.rewards) for k in range(len(members))]
    new, norm = update({HEAD: mean}, members, normalized(rewards, "rank"), c.lr)
    return new[HEAD], {"reward_mean": statistics.fmean(rewards), "reward_max": max(rewards), "step_norm": norm}


def grpo_generation(run: TeamRun, mean: torch.Tensor, problems: list[Problem], generation: int
                    ) -> tuple[torch.Tensor, dict]:
    c = settings(run.ctx.cfg)
    head = mean.tolist()
    draws = [{"head": head, "sample": True, "draw": generation * 1000 + j} for j in range(c.samples)]
    seeds = common_seeds(run.ctx.cfg, generation, len(problems))
    groups = run.episodes([p for p in problems for _ in draws], [d for _ in problems for d in draws], 1,
                          run.ctx.cfg.eval.temperature, [s for s in seeds for _ in draws])
    grad, rewards = torch.zeros_like(mean), []
    for k in range(len(problems)):
        group = groups[k * c.samples:(k + 1) * c.samples]
        r = [g.rewards[0] for g in group]
        rewards += r
        mu, sd = statistics.fmean(r), statistics.pstdev(r)
        for g, reward in zip(group, r):
            advantage = 0.0 if sd < 1e-6 else (reward - mu) / sd
            grad += policy_gradient(mean, g.completions[0].episode.info.get("decisions", []), advantage)
    step = c.lr * grad / max(len(rewards), 1)
    return mean + step, {"reward_mean": statistics.fmean(rewards), "reward_max": max(rewards),
                         "step_norm": float(step.norm())}


# Each optimizer's generation, and its own step size and episodes per problem (team.coordinator.lr / samples null).
# Measured on the shipped recipe's pool: grpo at lr 1 with 2 samples routed only part of one task after 20
# generations; at lr 4 with 4 samples it routed programs to the programmer (one seed).
OPTIMIZERS = {"es": (es_generation, {"lr": 1.0, "samples": 2}), "grpo": (grpo_generation, {"lr": 4.0, "samples": 4})}


def settings(cfg: RunConfig):
    """The coordinator's settings with the optimizer's own step size and samples where the recipe left them null."""
    c = cfg.team.coordinator
    own = OPTIMIZERS[c.optimizer][1]
    return c.model_copy(update={k: getattr(c, k) if getattr(c, k) is not None else v for k, v in own.items()})


def run_team(cfg: RunConfig, console=None) -> dict:
    """Train the pool's missing specialists, measure each member alone, evolve the coordinator, measure the team;
    write ``team.json``, ``coordinator.pt``, ``routing.png`` and ``generations.jsonl`` in the run directory."""
    from rlreason.drivers.team_members import prepare_members
    from rlreason.report.team_report import write_report
    from rlreason.run.cluster import start_cluster
    from rlreason.scoring import Scorer

    started = time.perf_counter()
    check_runnable(cfg)
    pool = prepare_members(cfg, console)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cluster = start_cluster(cfg, learner=False)
    try:
        with Scorer() as scorer:
            run = TeamRun(Context(cfg, cluster.workers, None, scorer), pool)
            report = {"members": pool, "roles": run.roles, "optimizer": cfg.team.coordinator.optimizer}
            problems = {t: fitting(run.ctx, eval_problems(cfg, t))[0] for t in cfg.tasks.eval}
            report["alone"] = {m: evaluate_config(run, problems, run.alone(m)) for m in run.names}
            _say(console, "alone: " + "  ".join(f"{m} {r['mixed']:.3f}" for m, r in report["alone"].items()))
            start = initial_head(cfg, run)
            report["before"] = evaluate_config(run, problems, {"head": start.tolist()})
            mean, report["generations"] = evolve(run, start, console)
            torch.save({"head": mean, "center": run.center, "members": run.names,
                        "roles": [r["name"] for r in run.roles]}, cfg.run_dir / "coordinator.pt")
            report["team"] = report["before"] if mean is start else \
                evaluate_config(run, problems, {"head": mean.tolist()})
    finally:
        cluster.shutdown()
    report["wall_s"] = time.perf_counter() - started
    return write_report(cfg.run_dir, report, console)


def initial_head(cfg: RunConfig, run: TeamRun) -> torch.Tensor:
    """Zeros, or the head of a saved coordinator (``team.coordinator.init``: its ``coordinator.pt``), which must
    have been trained on this pool and these roles."""
    from rlreason.recipe import RecipeError

    if cfg.team.coordinator.init is None:
        return torch.zeros(run.shape)
    saved = torch.load(cfg.team.coordinator.init)
    if saved["members"] != run.names or saved["roles"] != [r["name"] for r in run.roles]:
        raise RecipeError(f"team.coordinator.init: that coordinator routes {saved['members']} x {saved['roles']}, "
                          f"not this recipe's {run.names} x {[r['name'] for r in run.roles]}")
    run.center = saved["center"]  # (the head reads hidden states centred as when it was trained)
    run.base["center"] = run.center.tolist()
    return saved["head"]


def check_runnable(cfg: RunConfig) -> None:
    """One line before anything trains: a pool and held-out tasks to report on, and plain tasks (a team plays the
    problems itself: tasks that bring an environment of their own, tools, games, agents, are refused)."""
    from rlreason.recipe import RecipeError

    if not cfg.team.members:
        raise RecipeError("team.members: empty; list the pool, e.g. [{name: adder, adapter: runs/add/final}, "
                          "{name: base}]")
    if not cfg.tasks.eval:
        raise RecipeError("tasks.eval: empty; the team is reported on held-out tasks (e.g. [addition, programs])")

    for field, names in (("tasks.eval", cfg.tasks.eval), ("tasks.train", cfg.tasks.train)):
        for name in names:
            problem = next(iter(get_task(name).eval_problems(1, cfg.tasks.data_dir)), None)
            if problem is not None and "env" in problem.meta:
                raise RecipeError(f"{field}: {name!r} is played in environment {problem.meta['env']['name']!r}; a "
                                  "team answers plain tasks (allowed: tasks without an environment)")


def evolve(run: TeamRun, mean: torch.Tensor, console) -> tuple[torch.Tensor, list[dict]]:
    cfg = run.ctx.cfg
    c, stream, log = cfg.team.coordinator, problem_stream(cfg), []
    step = OPTIMIZERS[c.optimizer][0]
    with open(cfg.run_dir / "generations.jsonl", "w") as out:
        for g in range(1, c.generations + 1):
            began = time.perf_counter()
            reseed_engines(run.ctx, g)
            mean, metrics = step(run, mean, take_fitting(run.ctx, stream, c.problems), g)
            metrics.update(generation=g, seconds=time.perf_counter() - began)
            log.append(metrics)
            out.write(json.dumps(metrics) + "\n")
            out.flush()
            _say(console, f"generation {g}/{c.generations} ({c.optimizer}): reward {metrics['reward_mean']:.3f} "
                          f"(best {metrics['reward_max']:.3f}), {metrics['seconds']:.0f}s")
    return mean, log


def _say(console, line: str) -> None:
    if console is not None:
        console.print(f"[bold]team[/] {line}")
