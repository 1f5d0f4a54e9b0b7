"""Per algorithm over seeds: final held-out accuracy with a 95% Student-t interval, Welch's test against the best,
steps / compute seconds / tokens to reach a target accuracy, and the ScaleRL fit (asymptote A, exponent B)."""

from __future__ import annotations

import statistics
from collections import defaultdict

from rlreason.compare.runs import RunRecord
from rlreason.compare.scaling import bootstrap
from rlreason.compare.stats import mean_ci, welch


def by_algorithm(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: (r.algorithm, r.seed)):
        groups[run.algorithm].append(run)
    return dict(groups)


def default_target(runs: list[RunRecord]) -> float:
    """Halfway from the mean accuracy before training to the best algorithm's mean final accuracy."""
    base = statistics.fmean(r.eval_accuracy[0] for r in runs if r.eval_steps[0] == 0) if any(
        r.eval_steps[0] == 0 for r in runs) else 0.0
    best = max(statistics.fmean(r.final_accuracy for r in g) for g in by_algorithm(runs).values())
    return round(base + (best - base) / 2, 3)


def reach(run: RunRecord, target: float) -> tuple[int, float, float] | None:
    """(step, compute seconds, tokens) at the first evaluation at or above ``target``; None if never."""
    for step, acc in zip(run.eval_steps, run.eval_accuracy):
        if acc >= target:
            return step, run.at_step(run.seconds, step), run.at_step(run.tokens, step)
    return None


def analyze(runs: list[RunRecord], target: float | None = None) -> dict:
    """The numbers behind the report (JSON-ready), algorithms ordered by mean final accuracy."""
    target = default_target(runs) if target is None else target
    groups = by_algorithm(runs)
    rows = {name: _algorithm_row(group, target) for name, group in groups.items()}
    order = sorted(rows, key=lambda n: -rows[n]["final_mean"])
    best = order[0]
    for name in order:
        rows[name]["p_vs_best"] = None if name == best else welch(rows[best]["finals"], rows[name]["finals"])
    return {"target": target, "best": best, "order": order, "algorithms": rows,
            "task": runs[0].task, "runs": [str(r.path) for r in runs]}


def _algorithm_row(group: list[RunRecord], target: float) -> dict:
    finals = [r.final_accuracy for r in group]
    mean, half = mean_ci(finals)
    reached = [x for x in (reach(r, target) for r in group) if x is not None]
    base = [r.eval_accuracy[0] for r in group if r.eval_steps[0] == 0]
    r0 = statistics.fmean(base) if base else 0.0
    points = [[(r.at_step(r.tokens, s), a) for s, a in zip(r.eval_steps, r.eval_accuracy) if s > 0] for r in group]
    return {
        "seeds": [r.seed for r in group], "finals": finals, "final_mean": mean, "final_ci95": half,
        "base_mean": r0, "reached": len(reached),
        "steps_to_target": statistics.fmean(x[0] for x in reached) if reached else None,
        "seconds_to_target": statistics.fmean(x[1] for x in reached) if reached else None,
        "tokens": statistics.fmean(r.tokens[-1] for r in group),
        "compute_s": statistics.fmean(r.seconds[-1] for r in group),
        "wall_s": statistics.fmean(r.wall_s for r in group),
        "steps": max(r.steps[-1] for r in group),
        "fit": bootstrap(points, r0),
    }
