"""``rlreason compare RECIPE --algorithms a,b,c --seeds 3``: every (algorithm, seed) as its own ``rlreason train``
process (its own Ray cluster and engines), ``--parallel`` at a time, then the report.

Runs go to ``OUT/runs/<algorithm>-s<seed>/`` with logs in ``OUT/logs/``. Run again with the same OUT and a
finished run (``summary.json`` written) is kept, not redone; an unfinished one is moved aside to
``<name>.interrupted-<k>`` (never deleted) and run again. Every combination's recipe is validated before the
first process starts. Held-out accuracy is evaluated every ``steps // points`` steps, giving the curves.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rlreason.compare.runs import finished
from rlreason.recipe import RecipeError, load_config


@dataclass(frozen=True)
class Planned:
    name: str
    args: list[str]


def plan(recipe: str | None, algorithms: list[str], seeds: int, steps: int | None, overrides: list[str],
         out: Path, points: int = 5) -> list[Planned]:
    """The runs, seed-major (every algorithm's seed 0 first: partial results stay comparable); RecipeError on
    a bad combination."""
    out_runs = (out / "runs").resolve()
    planned = []
    for seed in range(seeds):
        for algorithm in algorithms:
            name = f"{algorithm}-s{seed}"
            mine = own_overrides(overrides, algorithm, algorithms)
            args = [*([recipe] if recipe else []), *mine, f"algorithm.name={algorithm}", f"seed={seed}",
                    f"name={name}", f"output.dir={out_runs}", "output.save_model=false", "train.checkpoint_every=0"]
            if steps is not None:
                args.append(f"train.steps={steps}")
            cfg = load_config(recipe, args[1:] if recipe else args)
            if cfg.train.steps is None:
                raise RecipeError("train.steps: compare needs a fixed number of steps (got null); pass --steps N")
            if not any(o.startswith("eval.every=") for o in mine):
                args.append(f"eval.every={max(1, cfg.train.steps // points)}")
            planned.append(Planned(name, args))
    return planned


def own_overrides(overrides: list[str], algorithm: str, algorithms: list[str]) -> list[str]:
    """The overrides for ``algorithm``'s runs: plain ``key=value`` ones, and ``ALG:key=value`` ones for this
    algorithm only (e.g. ``es:algorithm.sigma=0.003``: a field the other algorithms do not have)."""
    mine = []
    for override in overrides:
        key, eq, value = override.partition("=")
        target, colon, key = key.rpartition(":")  # (keys hold no colon; values and plugin names may)
        if not colon:
            mine.append(override)
        elif target not in algorithms:
            raise RecipeError(f"--set {override}: {target!r} is not one of --algorithms ({', '.join(algorithms)})")
        elif target == algorithm:
            mine.append(key + eq + value)
    return mine


def move_aside(run_dir: Path) -> Path | None:
    if not run_dir.exists():
        return None
    k = 1
    while run_dir.with_name(f"{run_dir.name}.interrupted-{k}").exists():
        k += 1
    target = run_dir.with_name(f"{run_dir.name}.interrupted-{k}")
    run_dir.rename(target)
    return target


def run_all(planned: list[Planned], out: Path, parallel: int = 1, echo=print) -> list[str]:
    """Run what is not finished yet, ``parallel`` at a time; returns the names that failed."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    todo = [p for p in planned if not finished(out / "runs" / p.name)]
    echo(f"{len(planned) - len(todo)} of {len(planned)} runs already finished; {len(todo)} to run")
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    failed: list[str] = []
    try:
        _drive(todo, running, failed, out, parallel, echo)
    finally:  # Ctrl-C or an error here: stop the runs in flight (each shuts down its own Ray cluster)
        for proc, _, log in running.values():
            proc.send_signal(signal.SIGINT)  # the run's own Ctrl-C path: it saves what it has and stops Ray
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    return failed


def _drive(todo: list[Planned], running: dict, failed: list[str], out: Path, parallel: int, echo) -> None:
    while todo or running:
        while todo and len(running) < parallel:
            p = todo.pop(0)
            moved = move_aside(out / "runs" / p.name)
            if moved:
                echo(f"  {p.name}: an unfinished earlier attempt was moved to {moved.name}")
            log = open(out / "logs" / f"{p.name}.log", "w")
            proc = subprocess.Popen([sys.executable, "-m", "rlreason.cli", "train", *p.args], stdout=log,
                                    stderr=subprocess.STDOUT)
            running[p.name] = (proc, time.perf_counter(), log)
            echo(f"  {p.name}: started")
        time.sleep(1.0)
        for name, (proc, start, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            ok = proc.returncode == 0 and finished(out / "runs" / name)
            if not ok:
                failed.append(name)
            echo(f"  {name}: {'done' if ok else f'FAILED (exit {proc.returncode}; see logs/{name}.log)'} in "
                 f"{time.perf_counter() - start:.0f}s")
