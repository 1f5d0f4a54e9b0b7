"""Online training from a growing stream of problems (``tasks.stream: PATH``): ``rlreason train`` hands a recipe
with a stream to this driver. It takes ``rollout.prompts_per_step`` problems as they arrive (waiting for writers),
runs the shared ``rl_step``, then records the step's problem ids (``problems.jsonl``) and the stream position
(``stream_position.json``), in that order. Prompts too long for the context are consumed but not trained (counted
as ``too_long_prompts``). ``train.steps: null`` trains until the stream is closed (or Ctrl-C); a number stops after
that many steps. Every ``eval.every`` steps and at the end, held-out accuracy is measured on every registered task
the stream has brought so far.

Every ``train.checkpoint_every`` steps and on Ctrl-C a checkpoint holds the learner and the stream position of that
step: ``--resume`` (which reuses the run directory) restores the model and continues the stream from there, exactly
as the uninterrupted run would (steps logged after the checkpoint are dropped and trained again on the same
problems). With no checkpoint yet, ``--resume`` continues the stream after the last trained problem
(``stream_position.json``), from the recipe's model: nothing trained twice, nothing skipped.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field

from rlreason.recipe import RunConfig
from rlreason.controller import as_configured, fitting, rl_step
from rlreason.tasks import TASKS
from rlreason.tasks.stream import StreamPosition, StreamReader

POSITION_FILE = "stream_position.json"


def run_online(cfg: RunConfig, console=None, resume: bool = False) -> dict:
    from rlreason.drivers.train import evaluate_and_log, restore_point, session
    from rlreason.report.console import StepProgress

    start = time.perf_counter()
    restored = restore_point(cfg, console, finished=lambda step: False) if resume else None
    with session(cfg, None if restored is None else restored[1]["step"], console) as run:
        state = _resume(run, restored, console)
        reader, seen, step = StreamReader(cfg.tasks.stream, state.position), state.seen, state.step
        with open(run.run_dir / "problems.jsonl", "a", buffering=1) as trained, \
                StepProgress(console, cfg.train.steps, cfg) as progress:
            try:
                for step in itertools.count(step + 1) if cfg.train.steps is None else range(step + 1,
                                                                                             cfg.train.steps + 1):
                    with run.stops.step_in_flight():
                        batch = [as_configured(cfg, p) for p in reader.take(cfg.rollout.prompts_per_step)]
                        if not batch:
                            break
                        batch, dropped = fitting(run.ctx, batch)
                        run.ctx.too_long += dropped
                        if not batch:
                            continue
                        metrics = {**rl_step(run.ctx, batch, step=step),
                                   "stream_consumed": float(reader.position.consumed),
                                   "stream_bad_lines": float(reader.position.bad_lines)}
                        trained.write(json.dumps({"step": step, "ids": [p.id for p in batch]}) + "\n")
                        reader.position.save(run.run_dir / POSITION_FILE)
                        seen.update(p.task for p in batch if p.task in TASKS.names())
                        run.log.write(step, metrics)
                        progress.update(step, metrics)
                        state = OnlineState(step, StreamPosition(**asdict(reader.position)), set(seen),
                                            state.trained + 1)
                    if cfg.eval.every and step % cfg.eval.every == 0 and seen:
                        evaluate_and_log(run.ctx, run.log, step, console, f"step {step}", tuple(sorted(seen)))
                    if cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0:
                        _checkpoint(run, state)
            except KeyboardInterrupt:
                _on_stop(run, state, console)
        after = evaluate_and_log(run.ctx, run.log, step, console, "end", tuple(sorted(seen))) if seen else {}
        if cfg.output.save_model:
            run.save_final()
        peak = run.peak_memory_gib()
    return {"steps": step, "consumed": reader.position.consumed, "closed": reader.closed, "after": after,
            "wall_s": time.perf_counter() - start, "peak_memory_gib": peak}


@dataclass
class OnlineState:
    """Where an online run stands after its last completed step."""

    step: int = 0
    position: StreamPosition = field(default_factory=StreamPosition)
    seen: set = field(default_factory=set)  # registered tasks the stream has brought (evaluated)
    trained: int = 0  # steps that trained (a step whose prompts all were too long did not): the learner's version


def _resume(run, restored, console) -> OnlineState:
    """From a checkpoint: the learner, the stream position and the trained-problems log as they were at its step.
    Without one: the stream after the last trained problem (``stream_position.json``), from the recipe's model."""
    if restored is None:
        position = StreamPosition.load(run.run_dir / POSITION_FILE)
        if position.consumed and console is not None:
            console.print(f"resuming the stream after {position.consumed} problems ({position.file}, byte "
                          f"{position.offset}); the model starts from the recipe's (no checkpoint yet)")
        return OnlineState(0, position, set())
    import ray

    from rlreason.controller import push_weights

    checkpoint, saved = restored
    ray.get(run.ctx.learner.load_checkpoint.remote(str(checkpoint.resolve())))
    push_weights(run.ctx)
    run.ctx.too_long = saved["too_long"]
    log = run.run_dir / "problems.jsonl"
    if log.is_file():  # the steps after the checkpoint are trained again
        kept = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= saved["step"]]
        log.write_text("".join(line + "\n" for line in kept))
    if console is not None:
        console.print(f"resuming from {checkpoint.name}: step {saved['step']} done, the stream after problem "
                      f"{saved['position']['consumed']}")
    return OnlineState(saved["step"], StreamPosition(**saved["position"]), set(saved["seen"]), saved["trained"])


def _checkpoint(run, state: OnlineState):
    from rlreason.run.checkpoint import save_checkpoint

    controller = {"step": state.step, "trained": state.trained, "position": asdict(state.position),
                  "seen": sorted(state.seen),
                  "too_long": run.ctx.too_long, "metric_lines": run.log.lines,
                  "recipe": run.ctx.cfg.model_dump(mode="json")}
    return save_checkpoint(run.run_dir, state.step, run.ctx.learner, controller, run.ctx.cfg.train.keep_checkpoints)


def _on_stop(run, state: OnlineState, console) -> None:
    """Ctrl-C: a checkpoint of the last completed step (when the learner is still at it) and its position."""
    import ray

    note = ""
    if run.ctx.cfg.train.checkpoint_every and state.step and \
            ray.get(run.ctx.learner.get_version.remote()) == state.trained:
        note = f"; checkpoint {_checkpoint(run, state).name}"
    if console is not None:
        console.print(f"[yellow]stopped; the stream continues after problem {state.position.consumed} on the next "
                      f"run (--resume){note}[/]")
