"""The driver loop: sample -> generate -> verify -> advantage -> train -> push weights -> log, each a visible call.

``rl_step`` is synchronous and on-policy: every step's rollouts come from the weights of the step before. The
asynchronous driver (``rlreason.drivers.async_rollouts``) reuses the same stages (``learn``, ``score``, the generate
calls); every completion carries the policy version that sampled it.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from rlreason.batching import build_train_batch
from rlreason.recipe import RunConfig
from rlreason.episode_groups import episode_metrics, settle
from rlreason.rollout.engine import SamplingSpec
from rlreason.rollout.episodes import EpisodeSpec
from rlreason.rollout.prompts import prompt_ids
from rlreason.rollout.recovery import on_workers
from rlreason.rollout.weight_channel import ObjectStorePush
from rlreason.scoring import EpisodeRewards, Scorer, score_composite
from rlreason.tasks import get_task
from rlreason.tasks.curriculum import observe_training
from rlreason.types import Problem, ScoredGroup


@dataclass
class Context:
    cfg: RunConfig
    workers: list
    learner: object
    scorer: Scorer
    retired: set[str] = field(default_factory=set)  # problem ids the policy already solves (leave the pool)
    too_long: int = 0  # training prompts left out so far: prompt + rollout.max_tokens over model.max_model_len
    worker_restarts: int = 0  # rollout workers restarted after dying (rlreason.rollout.recovery)
    lives: dict[int, int] = field(default_factory=dict)  # restarts of each worker
    tokenizer: object = None  # the model's, loaded on first use (prompt lengths, without asking an engine)
    seeds: dict[int, int] = field(default_factory=dict)  # the sampling seed each worker was last given
    pusher: object = field(default_factory=ObjectStorePush)  # how weights reach the engines (rollout.push)
    failed_episodes: int = 0  # episodes whose environment raised, so far (their groups were not trained on)


class ProblemStream:
    """Endless training problems, mixing the train tasks by their weights; never a held-out prompt, never one
    whose id is in ``retired`` (read live, so retiring takes effect on the next draw).

    ``drawn`` counts the underlying draws (retired ones included): a fresh stream of the same recipe that
    ``skip``s that many is exactly where this one is (how a resumed run continues its data)."""

    def __init__(self, cfg: RunConfig, retired: set[str] | None = None) -> None:
        self.cfg, self.retired, self.drawn = cfg, retired, 0
        self._streams = [get_task(name).train_problems(cfg.seed, cfg.tasks.data_dir) for name in cfg.tasks.train]
        self._weights = cfg.tasks.weights or [1.0] * len(self._streams)
        self._rng = random.Random(cfg.seed)

    def _draw(self) -> Problem:
        self.drawn += 1
        return next(self._rng.choices(self._streams, self._weights)[0])

    def __iter__(self) -> "ProblemStream":
        return self

    def __next__(self) -> Problem:
        while True:
            problem = self._draw()
            if self.retired is None or problem.id not in self.retired:
                return as_configured(self.cfg, problem)

    def skip(self, n: int) -> None:
        for _ in range(n):
            self._draw()


def problem_stream(cfg: RunConfig, retired: set[str] | None = None) -> ProblemStream:
    return ProblemStream(cfg, retired)


def take_fitting(ctx: Context, stream: Iterator[Problem], n: int) -> list[Problem]:
    """The next ``n`` problems of ``stream`` that fit the context (those that do not are counted in
    ``ctx.too_long`` and never sent to an engine). Draws no more than it uses, so a stream's position stays exact."""
    kept: list[Problem] = []
    dropped_in_a_row = 0
    while len(kept) < n:
        fit, dropped = fitting(ctx, [next(stream) for _ in range(n - len(kept))])
        ctx.too_long += dropped
        dropped_in_a_row = 0 if fit else dropped_in_a_row + dropped
        if dropped_in_a_row >= NOTHING_FITS:
            raise ValueError(nothing_fits(ctx.cfg, dropped_in_a_row))
        kept += fit
    return kept


NOTHING_FITS = 1000  # training prompts in a row too long for the context before a run gives up


def nothing_fits(cfg: RunConfig, n: int) -> str:
    return (f"{n} training prompts in a row do not fit model.max_model_len {cfg.model.max_model_len} with "
            f"rollout.max_tokens {cfg.rollout.max_tokens}; raise the first (up to the model's limit) or lower the "
            "second")


def step_seed(seed: int, step: int, rank: int, salt: str = "rollout") -> int:
    """The sampling seed of rollout worker ``rank`` at ``step``: a function of the run's seed only, so a resumed
    run samples exactly as the uninterrupted one would."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}:{step}:{rank}:{salt}".encode()).digest()[:8], "little") >> 1


def reseed_engines(ctx: Context, step: int, salt: str = "rollout") -> None:
    ctx.seeds = {rank: step_seed(ctx.cfg.seed, step, rank, salt) for rank in range(len(ctx.workers))}
    on_workers(ctx, {rank: (lambda w, s=seed: w.reseed.remote(s)) for rank, seed in ctx.seeds.items()})


def as_configured(cfg: RunConfig, problem: Problem) -> Problem:
    """Apply the recipe's verifier override, few-shot examples and prompt template."""
    from rlreason.tasks.prompting import fewshot_examples, formatted

    if cfg.tasks.verifier:
        problem = replace(problem, verifier=cfg.tasks.verifier)
    k = cfg.tasks.fewshot
    shots = fewshot_examples(problem.task, k, cfg.tasks.data_dir) if k else ()
    return formatted(problem, cfg.tasks.template, shots)


def generate(ctx: Context, problems: list[Problem], sampling: SamplingSpec,
             adapter: dict | None = None) -> list[tuple[Problem, list]]:
    """Spread problems over the rollout workers (a worker that dies is restarted and its share generated again);
    keep the input order. ``adapter``: tensors of an adapter of the policy's shape, served instead of it."""
    return gathered(problems, len(ctx.workers), on_workers(ctx, generate_calls(problems, len(ctx.workers),
                                                                             sampling, adapter=adapter)))


def generate_calls(problems: list[Problem], n: int, sampling: SamplingSpec,
                   seeds: dict[int, int] | None = None, adapter: dict | None = None) -> dict[int, Callable]:
    """Worker ``i``'s share of ``problems`` (every n-th), as a call for ``rollout.recovery`` (seeding the
    worker's sampling first, with ``seeds``)."""
    def call(i: int, chunk: list[Problem]) -> Callable:
        def send(worker):
            if seeds is not None:
                worker.reseed.remote(seeds[i])  # (an actor runs its calls in order: this one comes first)
            if adapter is not None:
                return worker.generate.remote(chunk, sampling, adapter)
            return worker.generate.remote(chunk, sampling)
        return send

    return {i: call(i, problems[i::n]) for i in range(n) if problems[i::n]}


def gathered(problems: list[Problem], n: int, done: dict[int, list]) -> list[tuple[Problem, list]]:
    """The workers' groups back in the problems' order."""
    out = [None] * len(problems)
    for i, groups in done.items():
        for j, group in enumerate(groups):
            out[i + j * n] = (problems[i + j * n], group)
    return out


def score(ctx: Context, generated: list[tuple[Problem, list]]) -> list[ScoredGroup]:
    """Every completion's result: its verifier's (composite rewards as the recipe says), or for an episode scored
    by its environment, the environment's reward (``EpisodeRewards``)."""
    items = [(c.text, p) for p, group in generated for c in group]
    scorer, terms = EpisodeRewards(ctx.scorer, [c for _, group in generated for c in group]), ctx.cfg.tasks.rewards
    results = iter(score_composite(scorer, items, terms) if terms else scorer.score(items))
    return [ScoredGroup(p, group, [next(results) for _ in group]) for p, group in generated]


def sampling_spec(cfg: RunConfig, n: int, temperature: float | None = None) -> SamplingSpec:
    """``n`` samples per problem at the recipe's settings (an episode: its ``env`` limits and shaping)."""
    r, e = cfg.rollout, cfg.env
    episode = EpisodeSpec(e.max_turns, e.max_tokens, e.limit_reward, e.turn_penalty, e.tool_call_penalty, e.discount,
                          e.timeout_s, e.endpoint_host)
    return SamplingSpec(n, r.max_tokens, r.temperature if temperature is None else temperature, r.top_p,
                        ignore_eos=r.ignore_eos, episode=episode)


def push_weights(ctx: Context) -> dict[str, float]:
    """Export the learner's weights (or adapter) once, as an ObjectRef, and load them into every engine in place.
    Returns seconds and bytes of the push."""
    import ray

    start = time.perf_counter()
    calls, sent = ctx.pusher.start(ctx)
    if sent is not None:
        loads = all_or_nothing(ctx, calls, sent)
    else:
        loads = on_workers(ctx, calls, reissue=False)  # (a revived worker is given the current weights anyway)
    if sent is not None and ray.get(sent) < 0:  # the weights left the broadcast's layout: the object store now
        ctx.pusher = ObjectStorePush()
        loads = on_workers(ctx, ctx.pusher.start(ctx)[0], reissue=False)
    seconds = time.perf_counter() - start
    return {"weight_sync_s": seconds, "weight_load_s": max(loads.values(), default=float("nan")),
            "weight_sync_bytes": float(ray.get(ctx.learner.last_export_bytes.remote()))}


def all_or_nothing(ctx: Context, calls: dict[int, Callable], sent) -> dict[int, float]:
    """A collective push: every engine and learner rank 0 in one broadcast. When one member fails, the others would
    wait for it until the collective's timeout (minutes): every member is stopped instead and the run ends with one
    line naming the one that failed, in seconds."""
    import ray

    from rlreason.rollout.recovery import PushLost

    refs = {calls[i](ctx.workers[i]): i for i in calls}
    pending, loads = [*refs, sent], {}
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            value = ray.get(done[0])
        except Exception as e:  # noqa: BLE001 - any member's failure ends the push
            who = f"rollout worker {refs[done[0]]}" if done[0] in refs else "learner rank 0"
            cause = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            for actor in [*ctx.workers, *ctx.learner.actors]:
                ray.kill(actor, no_restart=True)
            raise PushLost(f"{who} failed during a collective weight push ({cause}); the other members would have "
                           "waited for it until the push timed out: the run stops here; the last checkpoint is "
                           "intact: continue with --resume (rollout.push=object_store survives a worker's death)"
                           ) from e
        if done[0] in refs:
            loads[refs[done[0]]] = value
    return loads


def rl_step(ctx: Context, problems: list[Problem], more: Callable[[int], list[Problem]] | None = None,
            step: int | None = None) -> dict[str, float]:
    """One step of the loop; returns its flat metrics. ``more(n)`` supplies refills for dynamic sampling. With
    ``step``, the engines' sampling is seeded from (run seed, step, worker) first."""
    start = time.perf_counter()
    if step is not None:
        reseed_engines(ctx, step)
    groups, gen_time, dropped, tokens = collect_groups(ctx, problems, more)
    stats = learn(ctx, groups)
    sync = push_weights(ctx)
    # every generated token counts as compute, also those of groups dynamic sampling dropped
    return {**rollout_metrics(groups, gen_time), "rollout_tokens": float(tokens),
            "rollout_tokens_per_s": tokens / max(gen_time, 1e-9), **stats, "filtered_groups": dropped, **sync,
            "step_time_s": time.perf_counter() - start}


def learn(ctx: Context, groups: list[ScoredGroup]) -> dict[str, float]:
    """Retire solved prompts, attach greedy baselines when the algorithm needs them, train one step on the
    groups; the learner's metrics and the run's counters."""
    import ray

    cfg = ctx.cfg
    retired = retire_solved(ctx, groups)
    if cfg.algorithm.needs_greedy_baseline:
        groups = with_greedy_baselines(ctx, groups)
    batch = build_train_batch(groups, cfg.algorithm, max_tokens=cfg.rollout.max_tokens)
    stats = ray.get(ctx.learner.train_step.remote(batch))
    oldest = min(c.policy_version for g in groups for c in g.completions)
    # versions between the policy that sampled and the one that trained (sync: 0; a revived worker must not lag)
    return {**stats.metrics, "policy_version": stats.version, "staleness_max": float(stats.version - 1 - oldest),
            "retired_prompts": retired, **({"failed_episodes": float(ctx.failed_episodes)} if ctx.failed_episodes
                                          else {}),
            "too_long_prompts": float(ctx.too_long), "worker_restarts": float(ctx.worker_restarts)}


def collect_groups(ctx: Context, problems: list[Problem], more: Callable[[int], list[Problem]] | None,
                   max_rounds: int = 3) -> tuple[list[ScoredGroup], float, int, int]:
    """Generate and score a group per problem. With ``filter_zero_variance`` (DAPO's dynamic sampling), groups
    whose rewards are all equal are dropped and replaced by new problems, up to ``max_rounds`` extra rounds.

    Returns (groups, generation seconds, groups dropped, completion tokens generated in all)."""
    cfg = ctx.cfg
    sampling = sampling_spec(cfg, cfg.rollout.group_size)
    groups, gen_time, dropped, tokens, todo = [], 0.0, 0, 0, problems
    for round_ in range(max_rounds + 1):
        start = time.perf_counter()
        generated = generate(ctx, todo, sampling)
        gen_time += time.perf_counter() - start
        tokens += sum(c.sampled for _, group in generated for c in group)
        scored, failed = settle(score(ctx, generated), cfg.env.on_failure, cfg.env.max_failed_frac,
                                lambda again: score(ctx, generate(ctx, again, sampling)))
        ctx.failed_episodes += failed
        observe_training(scored)  # (a curriculum hears every group, also those dynamic sampling drops)
        if not cfg.algorithm.filter_zero_variance:
            return scored, gen_time, 0, tokens
        kept = [g for g in scored if len(set(g.rewards)) > 1]
        dropped += len(scored) - len(kept)
        groups += kept
        missing = len(problems) - len(groups)
        if missing <= 0 or more is None or round_ == max_rounds:
            break
        todo = more(missing)
    return (groups[: len(problems)] or scored), gen_time, dropped, tokens


def retire_solved(ctx: Context, groups: list[ScoredGroup]) -> int:
    """ScaleRL's no-positive-resampling: a prompt whose pass rate reaches ``tasks.retire_solved_at`` leaves the
    training pool for good. Returns how many prompts have left so far."""
    threshold = ctx.cfg.tasks.retire_solved_at
    if threshold is not None:
        ctx.retired.update(g.problem.id for g in groups
                           if statistics.fmean(r.correct for r in g.results) >= threshold)
    return len(ctx.retired)


def with_greedy_baselines(ctx: Context, groups: list[ScoredGroup]) -> list[ScoredGroup]:
    """One greedy completion per prompt, scored, attached as the group's baseline (not trained on)."""
    greedy = sampling_spec(ctx.cfg, 1, temperature=0.0)
    scored = score(ctx, generate(ctx, [g.problem for g in groups], greedy))
    return [replace(g, baseline=s.results[0]) for g, s in zip(groups, scored)]


def rollout_metrics(groups: list[ScoredGroup], gen_time: float) -> dict[str, float]:
    rewards = [s for g in groups for s in g.rewards]
    lengths = [c.sampled for g in groups for c in g.completions]
    correct = [r.correct for g in groups for r in g.results]
    return {
        "reward_mean": statistics.fmean(rewards), "reward_std": statistics.pstdev(rewards),
        "accuracy": statistics.fmean(correct), "completion_len": statistics.fmean(lengths),
        "truncated_frac": statistics.fmean(c.finish_reason == "length" for g in groups for c in g.completions),
        "verifier_errors": sum(r.error is not None for g in groups for r in g.results),
        "solved_none_frac": statistics.fmean(not any(r.correct for r in g.results) for g in groups),
        "rollout_tokens_per_s": sum(lengths) / max(gen_time, 1e-9), "rollout_time_s": gen_time,
        "rollout_tokens": float(sum(lengths)),
        **component_means(groups), **protocol_accuracies(groups), **episode_metrics(groups),
    }


def protocol_accuracies(groups: list[ScoredGroup]) -> dict[str, float]:
    """``accuracy_<protocol>``: accuracy under each other answer protocol the verifier reports (e.g. flexible),
    logged beside the trained-on (strict) ``accuracy``."""
    verdicts: dict[str, list[bool]] = {}
    for g in groups:
        for r in g.results:
            for name, ok in r.protocols.items():
                verdicts.setdefault(f"accuracy_{name}", []).append(bool(ok))
    return {k: statistics.fmean(v) for k, v in verdicts.items()}


def component_means(groups: list[ScoredGroup]) -> dict[str, float]:
    """``reward/<verifier>``: the mean of each composite-reward component (none without a composite reward)."""
    sums: dict[str, list[float]] = {}
    for g in groups:
        for r in g.results:
            for name, value in r.details.get("components", {}).items():
                sums.setdefault(f"reward/{name}", []).append(value)
    return {k: statistics.fmean(v) for k, v in sums.items()}


def fitting(ctx: Context, problems: list[Problem]) -> tuple[list[Problem], int]:
    """The problems whose prompt plus ``rollout.max_tokens`` fits ``model.max_model_len`` (the others would crash
    the engine), and how many were left out."""
    room = ctx.cfg.model.max_model_len - ctx.cfg.rollout.max_tokens
    lengths = prompt_lengths(ctx, problems)
    kept = [p for p, n in zip(problems, lengths) if n <= room]
    return kept, len(problems) - len(kept)


def prompt_lengths(ctx: Context, problems: list[Problem]) -> list[int]:
    """Prompt tokens of each problem as the engines will see them, counted here (an engine's queue may hold
    batches of an asynchronous run)."""
    if ctx.tokenizer is None and problems:
        ctx.tokenizer = load_tokenizer(ctx.cfg)
    return [len(prompt_ids(ctx.tokenizer, p)) for p in problems]


def load_tokenizer(cfg: RunConfig):
    from rlreason.models.tokens import DriverTokenizer

    return DriverTokenizer(cfg.model.resolved_path())
