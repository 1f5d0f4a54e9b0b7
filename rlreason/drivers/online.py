"""Online training from a growing stream of problems (``tasks.stream: PATH``): ``rlreason train`` hands a recipe
with a stream to this driver. It takes ``rollout.prompts_per_step`` problems as they arrive (waiting for writers),
runs the shared ``rl_step``, then records the step's problem ids (``problems.jsonl``) and the stream position
(``stream_position.json``), in that order, so a stopped run started again with ``--resume`` (which reuses the run
directory; without it a new run starts the stream afresh in a directory of its own) continues the stream where it
was: no problem trained twice, none skipped. Prompts too long for the context are consumed but not trained
(counted as ``too_long_prompts``). ``train.steps: null`` trains until the stream is
closed (or Ctrl-C); a number stops after that many steps (a later run continues). Every ``eval.every`` steps and
at the end, held-out accuracy is measured on every registered task the stream has brought so far.

The model itself is not restored by a restart (the train driver's checkpoints do not cover this driver yet): point
``model.adapter`` (LoRA) or ``model.path`` at the previous run's ``final/`` to continue from it; Ctrl-C saves it.
"""

from __future__ import annotations

import itertools
import json
import time

from rlreason.recipe import RunConfig
from rlreason.controller import as_configured, fitting, rl_step
from rlreason.tasks import TASKS
from rlreason.tasks.stream import StreamPosition, StreamReader

POSITION_FILE = "stream_position.json"


def run_online(cfg: RunConfig, console=None) -> dict:
    from rlreason.report.console import StepProgress
    from rlreason.drivers.train import evaluate_and_log, session

    start = time.perf_counter()
    with session(cfg) as run, open(run.run_dir / "problems.jsonl", "a", buffering=1) as trained:
        position = StreamPosition.load(run.run_dir / POSITION_FILE)
        if position.consumed and console is not None:
            console.print(f"resuming the stream after {position.consumed} problems ({position.file}, byte "
                          f"{position.offset})")
        reader, seen, step = StreamReader(cfg.tasks.stream, position), set(), 0
        with StepProgress(console, cfg.train.steps, cfg) as progress:
            try:
                for step in itertools.count(1) if cfg.train.steps is None else range(1, cfg.train.steps + 1):
                    batch = [as_configured(cfg, p) for p in reader.take(cfg.rollout.prompts_per_step)]
                    if not batch:
                        break
                    batch, dropped = fitting(run.ctx, batch)
                    run.ctx.too_long += dropped
                    if not batch:
                        continue
                    metrics = {**rl_step(run.ctx, batch), "stream_consumed": float(reader.position.consumed),
                               "stream_bad_lines": float(reader.position.bad_lines)}
                    trained.write(json.dumps({"step": step, "ids": [p.id for p in batch]}) + "\n")
                    reader.position.save(run.run_dir / POSITION_FILE)
                    seen.update(p.task for p in batch if p.task in TASKS.names())
                    run.log.write(step, metrics)
                    progress.update(step, metrics)
                    if cfg.eval.every and step % cfg.eval.every == 0 and seen:
                        evaluate_and_log(run.ctx, run.log, step, console, f"step {step}", tuple(sorted(seen)))
            except KeyboardInterrupt:
                if console is not None:
                    console.print(f"[yellow]stopped; the stream continues after problem "
                                  f"{reader.position.consumed} on the next run[/]")
        after = evaluate_and_log(run.ctx, run.log, step, console, "end", tuple(sorted(seen))) if seen else {}
        if cfg.output.save_model:
            run.save_final()
        peak = run.peak_memory_gib()
    return {"steps": step, "consumed": reader.position.consumed, "closed": reader.closed, "after": after,
            "wall_s": time.perf_counter() - start, "peak_memory_gib": peak}
