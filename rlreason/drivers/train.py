"""``rlreason train``: set up the run directory, the cluster and the scorer, then drive the loop with progress.

Everything the run produces lands in ``runs/<name>/``: the resolved recipe, ``metrics.jsonl`` (flushed per step),
TensorBoard events, ``summary.json`` and the final model as a Hugging Face directory.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rlreason.recipe import RecipeError, RunConfig
from rlreason.report.console import StepProgress, print_eval_table
from rlreason.run.checkpoint import latest_checkpoint, recipe_changes, save_checkpoint, trim_metrics
from rlreason.controller import (Context, load_tokenizer, problem_stream, push_weights, reseed_engines, rl_step,
                                 take_fitting)
from rlreason.evaluation.heldout import evaluate
from rlreason.learner.learner import NonFiniteError
from rlreason.report.metrics import MemoryMonitor, MetricsLogger
from rlreason.rollout.recovery import WorkerLost, if_learner_lost
from rlreason.scoring import Scorer


@dataclass
class RunSummary:
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    position: dict = field(default_factory=dict)  # the controller's state after the last completed step
    wall_s: float = 0.0
    peak_memory_gib: float = 0.0
    model_dir: str | None = None
    truncated_frac: float = 0.0  # share of training completions cut at rollout.max_tokens (this process's steps)
    warnings: list[str] = field(default_factory=list)  # shown under the table: e.g. too many cut completions


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
    cluster: object = None  # rlreason.run.cluster.Cluster
    stops: object = None  # rlreason.run.interrupts.Interrupts: wrap each step in stops.step_in_flight()

    def peak_memory_gib(self) -> float:
        """Peak memory of the run's processes: the driver's tree (a local instance's actors are in it); on a cluster
        it joined, plus each actor's own peak (a sum of peaks: an upper bound)."""
        import ray

        if self.cluster is None or self.cluster.local:
            return self.memory.peak_gib
        actors = self.cluster.actors
        return self.memory.peak_gib + sum(ray.get([a.peak_rss_bytes.remote() for a in actors], timeout=60)) / 2**30

    def save_final(self) -> str:
        import ray

        return ray.get(self.ctx.learner.save.remote(str((self.run_dir / "final").resolve())))


@contextlib.contextmanager
def session(cfg: RunConfig, resumed_at: int | None = None, console=None,
            handle_signals: bool = True) -> Iterator[Session]:
    """Write the run directory, start the memory monitor, metrics logger, scorer and Ray cluster; shut all down
    afterwards, whatever happened. ``resumed_at``: the step a resumed run continues after (TensorBoard drops what
    the interrupted run logged for later steps). ``console``: where the start-up is announced (it takes a while).
    ``handle_signals``: Ctrl-C and SIGTERM as a run takes them (``run.interrupts``); else they stay the caller's
    (the primitive API's scripts and notebooks)."""
    from rlreason.run.cluster import launch_cluster
    from rlreason.run.interrupts import interrupts
    from rlreason.rollout.weight_channel import open_pusher
    from rlreason.report.trackers import open_trackers

    purge = None if resumed_at is None else resumed_at + 1
    # the actors start while this process starts the rest; a cluster that cannot hold the run stops it here,
    # before its run directory exists
    started = time.perf_counter()
    cluster = launch_cluster(cfg)
    if console is not None:
        console.print(f"starting {len(cluster.workers)} rollout engine(s) and {cfg.train.learners} learner(s)...")
    # Ctrl-C / SIGTERM: finish the step in flight, checkpoint it, shut down; a second one: stop at once
    with interrupts(cluster, cfg.train.stop_wait_s) if handle_signals else contextlib.nullcontext() as stops:
        try:
            run_dir = write_recipe(cfg)
            with MemoryMonitor() as memory, MetricsLogger(run_dir, cfg.output.tensorboard, purge_step=purge) as log, \
                    Scorer() as scorer:
                log.add_trackers(open_trackers(cfg.output.trackers, run_dir, cfg.name, cfg.output.project,
                                               cfg.model_dump(mode="json")))
                ctx = Context(cfg, cluster.workers, cluster.learner, scorer, tokenizer=load_tokenizer(cfg))
                cluster.ready()
                ctx.pusher = open_pusher(cfg, cluster)
                if console is not None:
                    console.print(f"ready in {time.perf_counter() - started:.0f} s")
                (run_dir / "placement.json").write_text(json.dumps(cluster.where(), indent=2))
                yield Session(run_dir, ctx, log, memory, cluster, stops)
        finally:
            if stops is not None:
                stops.next_is_hard()  # a Ctrl-C now would cut the shut-down short: kill everything instead
            cluster.shutdown()


def ray_actor_error() -> type[Exception]:
    import ray

    return ray.exceptions.RayActorError


def train(cfg: RunConfig, console=None, resume: bool = False) -> RunSummary:
    """Train ``cfg.train.steps`` steps. ``resume``: continue the run in ``cfg.run_dir`` from its newest intact
    checkpoint (from step 0 in the same directory when it has none)."""
    start, summary = time.perf_counter(), RunSummary()
    restored = restore_point(cfg, console) if resume else None
    if restored is not None and _finished(cfg, restored[1]["step"]):
        return _already_done(cfg, console)
    with session(cfg, None if restored is None else restored[1]["step"], console) as run:
        stream = problem_stream(cfg, run.ctx.retired)
        if restored is not None:
            _restore(run, stream, summary, *restored, console)
        elif cfg.eval.before:
            summary.before = evaluate_and_log(run.ctx, run.log, 0, console, "before")
        _mark(run, (stream.drawn, run.ctx.too_long), summary)
        try:
            _loop(run, stream, console, summary)
        except (KeyboardInterrupt, NonFiniteError, WorkerLost) as e:  # keep what was learned; metrics are on disk
            _on_stop(run, summary, console, checkpoint=not isinstance(e, NonFiniteError))
            raise
        except ray_actor_error() as e:  # rollout workers are revived (rollout.recovery): the learner's death?
            if_learner_lost(run.ctx, e)
            raise
        if cfg.train.checkpoint_every:  # on exit too: --resume with more train.steps continues from here
            _checkpoint(run, summary)
        summary.after = evaluate_and_log(run.ctx, run.log, cfg.train.steps, console, "after") if cfg.eval.after else {}
        if cfg.output.save_model:
            summary.model_dir = run.save_final()
        summary.peak_memory_gib = run.peak_memory_gib()
    summary.wall_s = time.perf_counter() - start
    summary.warnings = run_warnings(cfg, summary)
    (run.run_dir / "summary.json").write_text(json.dumps(vars(summary), indent=2))
    print_eval_table(console, summary)
    return summary


class SyncSteps:
    """``rollout.mode: sync``: each step generates from the weights of the step before (on-policy)."""

    def __init__(self, ctx: Context, stream, console=None) -> None:
        self.ctx, self.stream = ctx, stream

    def take(self, n: int) -> list:
        return take_fitting(self.ctx, self.stream, n)

    def __call__(self, step: int) -> dict[str, float]:
        return rl_step(self.ctx, self.take(self.ctx.cfg.rollout.prompts_per_step), more=self.take, step=step)

    def position(self) -> tuple[int, int]:
        """Where a resume continues: the stream's draws and the too-long prompts counted, both for the steps done
        only."""
        return self.stream.drawn, self.ctx.too_long


def steps_for(cfg: RunConfig):
    """The driver: the algorithm's own (evolution strategies), else that of ``rollout.mode``."""
    from rlreason.algorithms import get_algorithm
    from rlreason.drivers.async_rollouts import AsyncSteps
    from rlreason.drivers.es import ESSteps

    own = {"es": ESSteps}.get(get_algorithm(cfg.algorithm.name).driver)
    return own or {"sync": SyncSteps, "async": AsyncSteps}[cfg.rollout.mode]


def _loop(run: Session, stream, console, summary: RunSummary) -> None:
    ctx, cfg = run.ctx, run.ctx.cfg
    every = cfg.train.checkpoint_every
    steps = steps_for(cfg)(ctx, stream, console)
    cut, first = summary.truncated_frac, summary.steps
    with StepProgress(console, cfg.train.steps, cfg) as progress:
        for step in range(summary.steps + 1, cfg.train.steps + 1):
            with run.stops.step_in_flight():  # a first Ctrl-C lets this step finish and be checkpointed
                metrics = steps(step)
                cut += metrics.get("truncated_frac", 0.0)
                summary.truncated_frac = cut / (step - first)
                run.log.write(step, metrics)
                progress.update(step, metrics)
                summary.steps = step
                _mark(run, steps.position(), summary)
            if cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.train.steps:
                evaluate_and_log(ctx, run.log, step, console, f"step {step}")
                _mark(run, steps.position(), summary)  # (with the evaluation's line)
            if every and step % every == 0 and step < cfg.train.steps:
                _checkpoint(run, summary)


def _mark(run: Session, position: tuple[int, int], summary: RunSummary) -> None:
    """Remember where the data stands after a completed step (a Ctrl-C in the next one must not move it)."""
    (drawn, too_long), ctx = position, run.ctx
    summary.position = {"step": summary.steps, "drawn": drawn, "retired": list(ctx.retired), "too_long": too_long,
                        "before": summary.before, "metric_lines": run.log.lines}


def _checkpoint(run: Session, summary: RunSummary):
    state = {**summary.position, "retired": sorted(summary.position["retired"]),
             "recipe": run.ctx.cfg.model_dump(mode="json")}
    return save_checkpoint(run.run_dir, state["step"], run.ctx.learner, state, run.ctx.cfg.train.keep_checkpoints)


def restore_point(cfg: RunConfig, console, finished=None) -> tuple[Path, dict] | None:
    """The newest intact checkpoint of ``cfg.run_dir`` (reporting unusable ones); metrics of later steps are
    dropped, since the resumed run writes them again (unless ``finished(step)``: the run is complete and nothing
    will be written again). RecipeError when the recipe changed where it may not."""
    finished = finished or (lambda step: _finished(cfg, step))
    say = print if console is None else console.print
    found = latest_checkpoint(cfg.run_dir, say)
    if found is not None:
        changed = recipe_changes(found[1]["recipe"], cfg.model_dump(mode="json"))
        if changed:
            raise RecipeError(f"--resume: the recipe changed since {found[0].name} ({'; '.join(changed[:3])}); only "
                              "train.steps, train.lr, checkpointing, eval.*, output.*, ray.*, rollout.workers, "
                              "rollout.kv_cache_gib and rollout.max_restarts may change")
    if found is None or not finished(found[1]["step"]):
        trim_metrics(cfg.run_dir, found[1]["step"] if found else -1, found[1].get("metric_lines") if found else 0)
    if found is None:
        say(f"no usable checkpoint in {cfg.run_dir}/checkpoints: starting from step 0 in the same directory")
    return found


def _finished(cfg: RunConfig, step: int) -> bool:
    """The run reached ``train.steps`` and wrote its summary (so its final evaluation and model are there)."""
    path = cfg.run_dir / "summary.json"
    return step >= cfg.train.steps and path.is_file() and json.loads(path.read_text()).get("steps") == step


def _already_done(cfg: RunConfig, console) -> RunSummary:
    summary = RunSummary(**json.loads((cfg.run_dir / "summary.json").read_text()))
    if console is not None:
        console.print(f"{cfg.run_dir} already finished its {summary.steps} steps: nothing to do (raise train.steps "
                      "to train on)")
    print_eval_table(console, summary)
    return summary


def _restore(run: Session, stream, summary: RunSummary, checkpoint: Path, state: dict, console) -> None:
    """The learner's state from ``checkpoint``, pushed to the engines; the stream, retired prompts and counters
    where they were."""
    import ray

    version = ray.get(run.ctx.learner.load_checkpoint.remote(str(checkpoint.resolve())))
    push_weights(run.ctx)
    stream.skip(state["drawn"])
    run.ctx.retired.update(state["retired"])
    run.ctx.too_long = state["too_long"]
    summary.steps, summary.before = state["step"], state["before"]
    if console is not None:
        console.print(f"resuming from {checkpoint.name}: step {state['step']} done (policy version {version})")


def _on_stop(run: Session, summary: RunSummary, console, checkpoint: bool) -> None:
    """Interrupted (``checkpoint``) or stopped: a checkpoint of the last completed step when the learner is still
    at it (a step half done on the learner's side cannot be checkpointed), and the model."""
    import ray

    note = ""
    at = summary.position["step"]
    if checkpoint and at > 0 and run.ctx.cfg.train.checkpoint_every and ray.get(
            run.ctx.learner.get_version.remote()) == at:
        note = f"; checkpoint {_checkpoint(run, summary).name}"
    saved = ray.get(run.ctx.learner.save.remote(str((run.run_dir / f"interrupted-{summary.steps}").resolve())))
    if console is not None:
        console.print(f"[yellow]stopped after step {summary.steps}; model saved to {saved}{note}; continue with "
                      "--resume[/]")


def run_warnings(cfg: RunConfig, summary: RunSummary) -> list[str]:
    """Lines for the end of a run: too many completions cut at the length limit, in training or evaluation."""
    from rlreason.report.console import truncation_warning, truncation_warnings

    limit, top = cfg.rollout.warn_truncated, cfg.rollout.max_tokens
    lines = [truncation_warning(summary.truncated_frac, "training", top)] if summary.truncated_frac > limit else []
    return lines + truncation_warnings(summary.after or summary.before, limit, top)


def evaluate_and_log(ctx: Context, log: MetricsLogger, step: int, console, label: str,
                     tasks: tuple[str, ...] | None = None) -> dict[str, float]:
    start = time.perf_counter()
    reseed_engines(ctx, step, "eval")  # evaluations sample reproducibly too (and a resumed run's the same way)
    result = evaluate(ctx, tasks)
    log.write(step, result, kind="eval")
    if console is not None:
        from rlreason.report.console import truncation_warnings

        shown = "  ".join(f"{k} {v:.3f}" for k, v in result.items())
        console.print(f"[bold]eval ({label})[/] {shown}  [dim]({time.perf_counter() - start:.0f}s)[/]")
        for line in truncation_warnings(result, ctx.cfg.rollout.warn_truncated, ctx.cfg.rollout.max_tokens):
            console.print(f"[red]{line}[/]", highlight=False)
    return result
