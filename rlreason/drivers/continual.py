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
growing stream is ``rlreason/drivers/online.py``.

Every ``train.checkpoint_every`` steps, at the end of every phase (after its evaluation) and on Ctrl-C, a checkpoint
holds the learner (adapters, the anchor, continual-backprop bookkeeping, optimizer, RNG) and where the run stands
(phase, step, each task stream's position, the replay choices' RNG, the accuracy matrix so far):
``rlreason continual RECIPE --resume`` continues from it, bit-exact. Columns of the matrix: the phases' tasks, then
every other task in ``tasks.eval`` (watched: what the stream did to a task no phase trains).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

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


class TaskStream:
    """One task's endless training stream, counting its draws (a resumed run skips that many)."""

    def __init__(self, cfg: RunConfig, task: str) -> None:
        self._problems = (as_configured(cfg, p) for p in get_task(task).train_problems(cfg.seed, cfg.tasks.data_dir))
        self.drawn = 0

    def __iter__(self) -> "TaskStream":
        return self

    def __next__(self) -> Problem:
        self.drawn += 1
        return next(self._problems)

    def skip(self, n: int) -> None:
        for _ in range(n):
            next(self)


def watched_tasks(cfg: RunConfig) -> list[str]:
    """The matrix's columns: the phases' tasks in order, then the other ``tasks.eval`` tasks."""
    return list(dict.fromkeys([*(p.task for p in cfg.continual.phases), *cfg.tasks.eval]))


@dataclass
class Standing:
    """Where a continual run stands after its last completed step: what a checkpoint holds besides the learner."""

    step: int = 0  # steps done, over all phases
    phases_done: int = 0  # phases trained and evaluated (the matrix's rows)
    base: list[float] = field(default_factory=list)
    matrix: list[list[float]] = field(default_factory=list)
    drawn: dict[str, int] = field(default_factory=dict)
    rng: list = field(default_factory=list)
    too_long: int = 0
    metric_lines: int = 0

    def phase_steps_done(self, cfg: RunConfig) -> int:
        return self.step - sum(p.steps for p in cfg.continual.phases[: self.phases_done])


def run_continual(cfg: RunConfig, console=None, resume: bool = False) -> dict:
    from rlreason.drivers.train import evaluate_and_log, restore_point, session

    if not cfg.continual.phases:
        raise ValueError("continual.phases: empty; list the phases, e.g. [{task: arithmetic, steps: 50}, ...]")
    report_file, tasks, start = cfg.run_dir / "continual.json", watched_tasks(cfg), time.perf_counter()
    restored = restore_point(cfg, console, finished=lambda step: report_file.is_file()) if resume else None
    if restored is not None and report_file.is_file():
        if console is not None:
            console.print(f"{cfg.run_dir} already finished its phases: nothing to do")
        return json.loads(report_file.read_text())
    with session(cfg, None if restored is None else restored[1]["step"], console) as run:
        streams, rng = {t: TaskStream(cfg, t) for t in dict.fromkeys(p.task for p in cfg.continual.phases)}, \
            random.Random(cfg.seed)
        if restored is not None:
            standing = _restore(run, streams, rng, *restored, console)
        else:
            standing = Standing(base=_accuracies(evaluate_and_log(run.ctx, run.log, 0, console, "base model",
                                                                  tuple(tasks)), tasks))
        try:
            _train_phases(cfg, run, console, tasks, streams, rng, standing)
        except KeyboardInterrupt:
            _on_stop(run, standing, console)
            raise
        final = run.save_final() if cfg.output.save_model or cfg.continual.merge else None
        peak = run.peak_memory_gib()
    report = summarize(tasks, [p.task for p in cfg.continual.phases], standing.base, standing.matrix)
    report.update(wall_s=time.perf_counter() - start, peak_memory_gib=peak, steps=standing.step,
                  switches=cfg.continual.model_dump(exclude={"phases"}))
    report_file.write_text(json.dumps(report, indent=2))
    heatmap(report, run.run_dir / "continual.png", title=cfg.name)
    if cfg.continual.merge:  # after the report is safe on disk
        from rlreason.models.merge import merge_adapter

        merge_adapter(final, run.run_dir / "final-merged")
    return report


def _train_phases(cfg: RunConfig, run, console, tasks: list[str], streams: dict, rng: random.Random,
                  standing: Standing) -> None:
    """Every phase from where ``standing`` is, evaluating all tasks after each (a matrix row) and checkpointing."""
    import ray

    from rlreason.drivers.train import evaluate_and_log
    from rlreason.report.console import StepProgress

    phases, every = cfg.continual.phases, cfg.train.checkpoint_every
    with StepProgress(console, sum(p.steps for p in phases), cfg) as progress:
        for i in range(standing.phases_done, len(phases)):
            phase, done = phases[i], standing.phase_steps_done(cfg)
            if i > 0 and done == 0:
                ray.get(run.ctx.learner.new_phase.remote())  # a fresh adapter with adapters: per_phase
                if cfg.continual.anchor:  # the previous phase's model (with a fresh adapter: the same function)
                    ray.get(run.ctx.learner.set_anchor.remote())
            earlier = [t for t in dict.fromkeys(p.task for p in phases[:i]) if t != phase.task]
            for k in range(done + 1, phase.steps + 1):
                with run.stops.step_in_flight():
                    step = standing.step + 1
                    batch = phase_batch(streams, phase.task, earlier, cfg.continual.replay_frac, rng,
                                        cfg.rollout.prompts_per_step, take=lambda s, n: take_fitting(run.ctx, s, n))
                    metrics = {**rl_step(run.ctx, batch, step=step), "phase": float(i)}
                    run.log.write(step, metrics)
                    progress.update(step, metrics)
                    _note(run, standing, streams, rng, step=step)
                if every and step % every == 0 and k < phase.steps:
                    _checkpoint(run, standing)
            result = evaluate_and_log(run.ctx, run.log, standing.step, console, f"after phase {i + 1}", tuple(tasks))
            standing.matrix.append(_accuracies(result, tasks))
            _note(run, standing, streams, rng, phases_done=i + 1)
            if every:
                _checkpoint(run, standing)


def _note(run, standing: Standing, streams: dict, rng: random.Random, **changes) -> None:
    """Record where the run stands (after a completed step or phase)."""
    for key, value in changes.items():
        setattr(standing, key, value)
    standing.drawn = {t: s.drawn for t, s in streams.items()}
    standing.rng, standing.too_long, standing.metric_lines = _jsonable(rng.getstate()), run.ctx.too_long, run.log.lines


def _jsonable(state):
    return [_jsonable(x) for x in state] if isinstance(state, (tuple, list)) else state


def _tupled(state):
    return tuple(_tupled(x) for x in state) if isinstance(state, list) else state


def _checkpoint(run, standing: Standing) -> Path:
    from rlreason.run.checkpoint import save_checkpoint

    state = {**vars(standing), "recipe": run.ctx.cfg.model_dump(mode="json")}
    return save_checkpoint(run.run_dir, standing.step, run.ctx.learner, state, run.ctx.cfg.train.keep_checkpoints)


def _restore(run, streams: dict, rng: random.Random, checkpoint: Path, state: dict, console) -> Standing:
    import ray

    from rlreason.controller import push_weights

    ray.get(run.ctx.learner.load_checkpoint.remote(str(checkpoint.resolve())))
    push_weights(run.ctx)
    standing = Standing(**{k: v for k, v in state.items() if k in Standing.__dataclass_fields__})
    for task, n in standing.drawn.items():
        streams[task].skip(n)
    rng.setstate(_tupled(standing.rng))
    run.ctx.too_long = standing.too_long
    if console is not None:
        console.print(f"resuming from {checkpoint.name}: step {standing.step} done, {standing.phases_done} phase(s) "
                      "evaluated")
    return standing


def _on_stop(run, standing: Standing, console) -> None:
    """Ctrl-C: a checkpoint of the last completed step when the learner is still at it."""
    import ray

    note = ""
    if run.ctx.cfg.train.checkpoint_every and standing.step > 0 and \
            ray.get(run.ctx.learner.get_version.remote()) == standing.step:
        note = f"; checkpoint {_checkpoint(run, standing).name}: continue with --resume"
    if console is not None:
        console.print(f"[yellow]stopped after step {standing.step}{note}[/]")


def _accuracies(result: dict[str, float], tasks: list[str]) -> list[float]:
    return [result[f"{t}/accuracy"] for t in tasks]
