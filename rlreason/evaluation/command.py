"""``rlreason eval MODEL --task T``: sample ``n`` completions per held-out problem through the vLLM rollout
workers, score them with the task's verifier (the same runner as training), and report pass@k, maj@k, mean@k,
completion length, truncation and verifier errors with 95% intervals over problems.

MODEL is ``tiny``, ``smollm2``, a Hugging Face model directory, a saved LoRA adapter directory, or a run directory
(its ``final/``; the run's recipe then supplies the prompt template, context and generation length, so the
evaluation matches the run's own held-out evaluation). Writes ``eval.json`` and ``problems.jsonl`` (every
completion with its extracted answer, score and verdict) into the output directory, never over an earlier one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from rlreason.recipe import EMBEDDED_MODEL, SMOLLM2, RunConfig, load_config


def model_settings(model: str, adapter: str | None = None) -> tuple[str | None, list[str]]:
    """(recipe to start from or None, overrides that select the model) for a MODEL argument."""
    from rlreason.models.info import adapter_settings

    path = Path(model)
    if model in (EMBEDDED_MODEL, SMOLLM2) and not path.exists():
        return None, [f"model.path={model}", *_adapter_overrides(adapter)]
    if (path / "recipe.yaml").is_file():  # a run directory
        if not (path / "final").is_dir():
            raise ValueError(f"MODEL: the run {model!r} has no final/ model (it ran with output.save_model=false, "
                             "or has not finished)")
        _, overrides = model_settings(str(path / "final"), adapter)
        if not Path(overrides[0].split("=", 1)[1]).exists():  # an adapter whose recorded base moved: the run's
            recorded = (yaml.safe_load((path / "recipe.yaml").read_text()) or {}).get("model", {}).get("path")
            overrides[0] = f"model.path={recorded}"
        return str(path / "recipe.yaml"), overrides
    if (path / "adapter_config.json").is_file():
        base = adapter_settings(path).get("base_model_name_or_path") or ""
        return None, [f"model.path={base}", *_adapter_overrides(adapter or str(path))]
    if (path / "config.json").is_file():
        return None, [f"model.path={path.resolve()}", *_adapter_overrides(adapter)]
    raise ValueError(f"MODEL: {model!r} is not 'tiny', 'smollm2', a model directory, an adapter directory or a run "
                     "directory (with final/ and recipe.yaml)")


def _adapter_overrides(adapter: str | None) -> list[str]:
    return [] if adapter is None else [f"model.adapter={Path(adapter).resolve()}", "model.lora=null"]


def eval_config(model: str, tasks: list[str], n: int, limit: int | None, temperature: float | None,
                adapter: str | None = None, overrides: list[str] = (), data: dict | None = None) -> RunConfig:
    """The recipe of an evaluation. ``data``: your own file as one more task (every row held out), given as
    ``tasks.data`` fields (data, prompt or messages, reference, verifier, id)."""
    recipe, chosen = model_settings(model, adapter)
    if data is not None:
        data = {"held_out": 1.0, **{k: v for k, v in data.items() if v is not None}}
        tasks = [*tasks, data.get("name") or Path(data["data"]).stem.replace(".", "_")]
        chosen.append(f"tasks.data=[{json.dumps(data)}]")
    settings = [*chosen, f"tasks.eval=[{','.join(tasks)}]", f"tasks.eval_size={'null' if limit is None else limit}",
                f"eval.samples={n}", "continual.adapters=shared", "continual.phases=[]", "name=eval"]
    if temperature is not None:
        settings.append(f"eval.temperature={temperature}")
    return load_config(recipe, [*settings, *overrides])


def output_dir(requested: str | None, model: str) -> Path:
    """``requested``, else ``<run>/eval`` for a run directory or ``eval-<model name>``; an existing directory
    is never reused: ``-2``, ``-3``... is appended."""
    if requested:
        base = Path(requested)
    elif (Path(model) / "recipe.yaml").is_file():
        base = Path(model) / "eval"
    else:
        base = Path(f"eval-{Path(model).resolve().name if Path(model).exists() else model}")
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def run_eval(cfg: RunConfig, ks: list[int], out: Path, console=None) -> dict:
    """Evaluate every task of ``cfg.tasks.eval``; write ``eval.json`` and ``problems.jsonl`` into ``out``."""
    from rlreason.run.cluster import start_cluster
    from rlreason.controller import Context
    from rlreason.evaluation.heldout import evaluate_groups
    from rlreason.episode_groups import episode_metrics
    from rlreason.evaluation.metrics import group_summary
    from rlreason.scoring import Scorer
    from rlreason.verifiers import same_answer_of

    cluster = start_cluster(cfg, learner=False)  # (a cluster that cannot hold the engines: before out exists)
    try:
        out.mkdir(parents=True)
    except BaseException:
        cluster.shutdown()
        raise
    from rlreason.report.console import truncation_warning
    from rlreason.recipe.defaults import resolution_notes

    report = {"model": cfg.model.path, "adapter": cfg.model.adapter, "n": cfg.eval.samples, "k": ks,
              "temperature": cfg.eval.temperature, "max_tokens": cfg.rollout.max_tokens,
              "max_model_len": cfg.model.max_model_len, "template": cfg.tasks.template,
              "fewshot": cfg.tasks.fewshot, "resolved": resolution_notes(cfg), "tasks": {}, "warnings": []}
    with Scorer() as scorer, open(out / "problems.jsonl", "w") as rows:
        try:
            ctx = Context(cfg, cluster.workers, None, scorer)
            for task in cfg.tasks.eval:
                start = time.perf_counter()
                groups, too_long = evaluate_groups(ctx, task, cfg.eval.samples, cfg.eval.temperature)
                verifier = groups[0].problem.verifier if groups else None
                report["tasks"][task] = {
                    "problems": len(groups), "too_long": too_long, "verifier": verifier,
                    "seconds": time.perf_counter() - start,
                    "metrics": group_summary(groups, ks, same_answer_of(verifier) if verifier else None),
                    **({"episodes": episode_metrics(groups, len(cluster.workers))} if any(
                        c.episode is not None for g in groups for c in g.completions) else {})}
                metrics = report["tasks"][task]["metrics"]
                cut = metrics.get("truncated_frac", {}).get("mean", 0.0)
                if cut > cfg.rollout.warn_truncated:
                    report["warnings"].append(truncation_warning(cut, task, cfg.rollout.max_tokens,
                                                                 metrics["looping_frac"]["mean"]))
                for g in groups:
                    rows.write(json.dumps(problem_record(task, g), default=str) + "\n")
                if console is not None:
                    console.print(f"{task}: {len(groups)} problems x {cfg.eval.samples} in "
                                  f"{time.perf_counter() - start:.0f}s" + (f", {too_long} too long for the "
                                                                           "context (left out)" if too_long else ""))
        finally:
            cluster.shutdown()
    (out / "eval.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "eval.md").write_text(table(report) + "\n")
    return report


def problem_record(task: str, group) -> dict:
    """One problem's line of ``problems.jsonl``: every completion with its verdicts; an episode turn by turn (who
    said what, tokens, tool calls and errors), how it ended and its reward."""
    p = group.problem
    return {"task": task, "id": p.id, "prompt": p.prompt, "reference": p.reference, "completions": [
        {"text": c.text, "extracted": r.details.get("extracted"), "score": r.score, "correct": r.correct,
         "protocols": r.protocols, "error": r.error, "finish_reason": c.finish_reason, "tokens": c.sampled,
         **({} if c.episode is None else {"episode": episode_record(c.episode)})}
        for c, r in zip(group.completions, group.results)]}


def episode_record(episode) -> dict:
    return {"env": episode.env, "reason": episode.reason, "reward": episode.reward, "solved": episode.solved,
            "error": episode.error, "turns": [{"role": t.role, "text": t.text, "tokens": t.tokens,
                                               **({"tool_calls": t.tool_calls, "tool_errors": t.tool_errors}
                                                  if t.role == "assistant" else {})} for t in episode.turns]}


def table(report: dict) -> str:
    """Markdown: one row per task; pass@k for every k (strict: the verifier's own answer protocol), pass@1 under
    the flexible protocol where the verifier reports it, maj@k for the largest k (mean +- 95% half-width),
    completion length, truncated and verifier-error shares; then any warning line. Everything else is in
    eval.json."""
    top = max(report["k"])
    keys = [f"pass@{k}" for k in report["k"]] + ["flexible_pass@1", f"maj@{top}", "completion_len", "truncated_frac",
                                                 "verifier_error_frac"]
    names = {"completion_len": "length", "truncated_frac": "truncated", "verifier_error_frac": "errors",
             "flexible_pass@1": "pass@1 flexible"}
    lines = ["| task | problems | " + " | ".join(names.get(k, k) for k in keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for task, t in report["tasks"].items():
        cells = []
        for k in keys:
            m = t["metrics"].get(k)
            cells.append("-" if m is None else f"{m['mean']:.1f}" if k == "completion_len" else
                         f"{m['mean']:.3f}" if k in names and k != "flexible_pass@1" else
                         f"{m['mean']:.3f} +- {m['ci95']:.3f}")
        lines.append(f"| {task} | {t['problems']} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] * bool(report.get("warnings")) + report.get("warnings", []))
