"""Held-out evaluation: every task's fixed held-out problems that fit the context, ``eval.samples`` completions
each, scored by the same verifiers as training; pass@1 as ``<task>/accuracy``, then pass@n, maj@n, the flexible
protocol's accuracy and the truncated share. The same code serves the evaluations during training and ``rlreason
eval`` (``rlreason.evaluation.command``)."""

from __future__ import annotations

import statistics
from dataclasses import replace

from rlreason.controller import Context, as_configured, fitting, generate, sampling_spec, score
from rlreason.episode_groups import episode_metrics
from rlreason.recipe import RunConfig
from rlreason.tasks import get_task
from rlreason.types import Problem, ScoredGroup


def eval_problems(cfg: RunConfig, task: str) -> list[Problem]:
    return [as_configured(cfg, p) for p in get_task(task).eval_problems(cfg.tasks.eval_size, cfg.tasks.data_dir)]


def evaluate_groups(ctx: Context, name: str, n: int, temperature: float,
                    adapter: dict | None = None) -> tuple[list[ScoredGroup], int]:
    """Task ``name``'s held-out problems that fit the context, ``n`` completions each, scored; and how many
    problems did not fit. ``adapter``: tensors of an adapter evaluated instead of the policy."""
    # No per-request seed: the engines draw from their own seeded stream (reseed_engines). (Seeded requests on CPU
    # crashed vLLM, "CPU Generator does not use offset", until chunked prefill was turned off there.)
    sampling = replace(sampling_spec(ctx.cfg, n, temperature), ignore_eos=False)
    problems, too_long = fitting(ctx, eval_problems(ctx.cfg, name))
    return (score(ctx, generate(ctx, problems, sampling, adapter)) if problems else []), too_long


def evaluate(ctx: Context, tasks: tuple[str, ...] | None = None, adapter: dict | None = None) -> dict[str, float]:
    """Held-out metrics per task (default: the eval tasks): ``eval.samples`` completions per problem at
    ``eval.temperature``; ``<task>/accuracy`` is pass@1, then pass@n and maj@n (the same code as ``rlreason
    eval``). ``adapter``: tensors of an adapter of the policy's shape (an ES elite) evaluated instead of it."""
    from rlreason.evaluation.metrics import group_summary
    from rlreason.verifiers import same_answer_of

    cfg, out = ctx.cfg, {}
    ks = sorted({1, cfg.eval.samples})
    for name in cfg.tasks.eval if tasks is None else tasks:
        groups, too_long = evaluate_groups(ctx, name, cfg.eval.samples, cfg.eval.temperature, adapter)
        summary = group_summary(groups, ks, same_answer_of(groups[0].problem.verifier)) if groups else {}
        out[f"{name}/accuracy"] = summary["pass@1"]["mean"] if groups else float("nan")  # nothing fit: unknown
        out.update({f"{name}/{m}@{cfg.eval.samples}": summary[f"{m}@{cfg.eval.samples}"]["mean"]
                    for m in ("pass", "maj") if f"{m}@{cfg.eval.samples}" in summary})
        out.update({f"{name}/accuracy_{k.removesuffix('_pass@1')}": v["mean"] for k, v in summary.items()
                    if k.endswith("_pass@1")})
        if groups:
            out[f"{name}/truncated_frac"] = summary["truncated_frac"]["mean"]
            episodes = episode_metrics(groups, len(ctx.workers))
            out.update({f"{name}/{k}": v for k, v in episodes.items() if k in ("episode_turns", "episode_tool_calls")})
            if any(c.episode is not None and c.episode.failed for g in groups for c in g.completions):
                out[f"{name}/failed_frac"] = statistics.fmean(c.episode is not None and c.episode.failed
                                                              for g in groups for c in g.completions)
        if too_long:
            out[f"{name}/too_long"] = float(too_long)
    return out
