"""``rlreason continual RECIPE``: train through a sequence of tasks (``continual.phases``) and report what was
learned, what was forgotten and whether the model can still learn.

A small driver over the same stages as ``rlreason train`` (``rl_step``, ``evaluate``): before the first phase and
after every phase it evaluates every task of the run on its held-out set, building the accuracy matrix; at the end
it writes ``continual.json`` (matrix, average accuracy, forgetting, backward and forward transfer) and
``continual.png`` (the heatmap) into the run directory. Switches (``continual.*``): ``replay_frac`` (that share of
every batch comes from earlier phases' training streams, which continue where they left off), ``anchor`` (from
phase 2 on, the KL reference is the adapter as it was at the end of the previous phase), ``cbp_every`` (continual
backprop on the adapter's rank components, in the learner), ``adapters: per_phase`` (a fresh adapter per phase,
earlier ones frozen: ``learner/phased_lora.py``), ``merge`` (also write ``final-merged/``, the adapter(s) folded
into the base weights). Plasticity metrics (``lora/*``, of the adapter that trains) and ``kl_to_ref`` are logged as
in any LoRA run (with the anchor, ``kl_to_ref`` is the KL to the previous phase's model). Online training from a
growing stream is ``rlreason/online.py``.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator

from rlreason.recipe import RunConfig
from rlreason.report.continual_metrics import heatmap, summarize
from rlreason.controller import as_configured, rl_step, take_fitting
from rlreason.tasks import get_task
from rlreason.types import Problem


def phase_batch(streams: dict[str, Iterator[Problem]], current: str, earlier: list[str], replay_frac: float,
                rng: random.Random, n: int, take: Callable[[Iterator[Problem], int], list[Problem]] | None = None
                ) -> list[Problem]:
    """``n`` problems: ``round(n * replay_frac)`` of them from earlier phases' tasks (chosen uniformly), the rest
    from the current task. Streams are shared across phases, so a task's stream continues where it stopped.
    ``take(stream, k)``: the next k problems of a stream (the driver's leaves out prompts that cannot fit)."""
    take = take or (lambda stream, k: [next(stream) for _ in range(k)])
    replayed = round(n * replay_frac) if earlier else 0
    batch = take(streams[current], n - replayed)
    for task, k in Counter(rng.choice(earlier) for _ in range(replayed)).items():
        batch += take(streams[task], k)
    return batch


def task_streams(cfg: RunConfig, tasks: list[str]) -> dict[str, Iterator[Problem]]:
    return {t: (as_configured(cfg, p) for p in get_task(t).train_problems(cfg.seed, cfg.tasks.data_dir)) for t in tasks}


def run_continual(cfg: RunConfig, console=None) -> dict:
    from rlreason.drivers.train import evaluate_and_log, session

    phases = cfg.continual.phases
    if not phases:
        raise ValueError("continual.phases: empty; list the phases, e.g. [{task: arithmetic, steps: 50}, ...]")
    tasks, start = list(dict.fromkeys(p.task for p in phases)), time.perf_counter()
    with session(cfg) as run:
        base = _accuracies(evaluate_and_log(run.ctx, run.log, 0, console, "base model", tuple(tasks)), tasks)
        matrix, steps = _train_phases(cfg, run, console, tasks)
        final = run.save_final() if cfg.output.save_model or cfg.continual.merge else None
        peak = run.peak_memory_gib()
    report = summarize(tasks, [p.task for p in phases], base, matrix)
    report.update(wall_s=time.perf_counter() - start, peak_memory_gib=peak, steps=steps,
                  switches=cfg.continual.model_dump(exclude={"phases"}))
    (run.run_dir / "continual.json").write_text(json.dumps(report, indent=2))
    heatmap(report, run.run_dir / "continual.png", title=cfg.name)
    if cfg.continual.merge:  # after the report is safe on disk
        from rlreason.models.merge import merge_adapter

        merge_adapter(final, run.run_dir / "final-merged")
    return report


def _train_phases(cfg: RunConfig, run, console, tasks: list[str]) -> tuple[list[list[float]], int]:
    """Every phase in order, evaluating all tasks after each: (accuracy matrix rows, steps taken)."""
    import ray

    from rlreason.report.console import StepProgress
    from rlreason.drivers.train import evaluate_and_log

    phases, matrix, step = cfg.continual.phases, [], 0
    streams, rng = task_streams(cfg, tasks), random.Random(cfg.seed)
    with StepProgress(console, sum(p.steps for p in phases), cfg) as progress:
        for i, phase in enumerate(phases):
            if i > 0:
                ray.get(run.ctx.learner.new_phase.remote())  # a fresh adapter with adapters: per_phase
                if cfg.continual.anchor:  # the previous phase's model (with a fresh adapter: the same function)
                    ray.get(run.ctx.learner.set_anchor.remote())
            earlier = [t for t in dict.fromkeys(p.task for p in phases[:i]) if t != phase.task]
            for _ in range(phase.steps):
                step += 1
                batch = phase_batch(streams, phase.task, earlier, cfg.continual.replay_frac, rng,
                                    cfg.rollout.prompts_per_step, take=lambda s, k: take_fitting(run.ctx, s, k))
                metrics = {**rl_step(run.ctx, batch), "phase": float(i)}
                run.log.write(step, metrics)
                progress.update(step, metrics)
            result = evaluate_and_log(run.ctx, run.log, step, console, f"after phase {i + 1}", tuple(tasks))
            matrix.append(_accuracies(result, tasks))
    return matrix, step


def _accuracies(result: dict[str, float], tasks: list[str]) -> list[float]:
    return [result[f"{t}/accuracy"] for t in tasks]
