"""``rlreason train``: set up the run directory, the cluster and the scorer, then drive the loop with progress.

Everything the run produces lands in ``runs/<name>/``: the resolved recipe, ``metrics.jsonl`` (flushed per step),
TensorBoard events, ``summary.json`` and the final model as a Hugging Face directory.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rlreason.config import RunConfig
from rlreason.console import StepProgress, print_eval_table
from rlreason.controller import Context, evaluate, fitting_stream, problem_stream, rl_step
from rlreason.learner.learner import NonFiniteError
from rlreason.metrics import MemoryMonitor, MetricsLogger
from rlreason.scoring import Scorer


@dataclass
class RunSummary:
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    wall_s: float = 0.0
    peak_memory_gib: float = 0.0
    model_dir: str | None = None


def write_recipe(cfg: RunConfig):
    """Create the run directory with the resolved recipe in it; returns the directory."""
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return run_dir


@dataclass
class Session:
    """What every driver (train, continual, online) runs in: its run directory, metrics, memory and stages."""

    run_dir: Path
    ctx: Context
    log: MetricsLogger
    memory: MemoryMonitor

    def save_final(self) -> str:
        import ray

        return ray.get(self.ctx.learner.save.remote(str((self.run_dir / "final").resolve())))


@contextlib.contextmanager
def session(cfg: RunConfig) -> Iterator[Session]:
    """Write the run directory, start the memory monitor, metrics logger, scorer and Ray cluster; shut all down
    afterwards, whatever happened."""
    from rlreason.cluster import start_cluster

    from rlreason.trackers import open_trackers

    run_dir = write_recipe(cfg)
    with MemoryMonitor() as memory, MetricsLogger(run_dir, cfg.output.tensorboard) as log, Scorer() as scorer:
        log.add_trackers(open_trackers(cfg.output.trackers, run_dir, cfg.name, cfg.output.project,
                                       cfg.model_dump(mode="json")))
        cluster = start_cluster(cfg)
        try:
            yield Session(run_dir, Context(cfg, cluster.workers, cluster.learner, scorer), log, memory)
        finally:
            cluster.shutdown()


def train(cfg: RunConfig, console=None) -> RunSummary:
    start, summary = time.perf_counter(), RunSummary()
    with session(cfg) as run:
        ctx, log = run.ctx, run.log
        summary.before = evaluate_and_log(ctx, log, 0, console, "before") if cfg.eval.before else {}
        try:
            _loop(ctx, log, console, summary)
        except (KeyboardInterrupt, NonFiniteError):  # keep what was learned; metrics.jsonl is already on disk
            import ray

            saved = ray.get(ctx.learner.save.remote(str((run.run_dir / f"interrupted-{summary.steps}").resolve())))
            if console is not None:
                console.print(f"[yellow]stopped after step {summary.steps}; model saved to {saved}[/]")
            raise
        summary.after = evaluate_and_log(ctx, log, cfg.train.steps, console, "after") if cfg.eval.after else {}
        if cfg.output.save_model:
            summary.model_dir = run.save_final()
    summary.peak_memory_gib = run.memory.peak_gib
    summary.wall_s = time.perf_counter() - start
    (run.run_dir / "summary.json").write_text(json.dumps(vars(summary), indent=2))
    print_eval_table(console, summary)
    return summary


def _loop(ctx: Context, log: MetricsLogger, console, summary: RunSummary) -> None:
    cfg, stream = ctx.cfg, fitting_stream(ctx, problem_stream(ctx.cfg, ctx.retired))
    with StepProgress(console, cfg.train.steps) as progress:
        for step in range(1, cfg.train.steps + 1):
            metrics = rl_step(ctx, list(itertools.islice(stream, cfg.rollout.prompts_per_step)),
                              more=lambda n: list(itertools.islice(stream, n)))
            log.write(step, metrics)
            progress.update(step, metrics)
            summary.steps = step
            if cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.train.steps:
                evaluate_and_log(ctx, log, step, console, f"step {step}")


def evaluate_and_log(ctx: Context, log: MetricsLogger, step: int, console, label: str,
                     tasks: tuple[str, ...] | None = None) -> dict[str, float]:
    start = time.perf_counter()
    result = evaluate(ctx, tasks)
    log.write(step, result, kind="eval")
    if console is not None:
        shown = "  ".join(f"{k} {v:.3f}" for k, v in result.items())
        console.print(f"[bold]eval ({label})[/] {shown}  [dim]({time.perf_counter() - start:.0f}s)[/]")
    return result
