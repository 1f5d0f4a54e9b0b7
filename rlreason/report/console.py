"""What a person sees: a progress bar with live metrics, one line per step, and the before/after table."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

# Shown on each step's line, in this order: (metric, label, format).
STEP_LINE = (("reward_mean", "reward", ".3f"), ("accuracy", "acc", ".3f"), ("completion_len", "len", ".1f"),
             ("entropy", "entropy", ".3f"), ("kl", "kl", ".4f"), ("grad_norm", "gnorm", ".3f"),
             ("clip_frac", "clip", ".3f"), ("rollout_tokens_per_s", "tok/s", ".0f"),
             ("weight_sync_s", "sync", ".2f"), ("step_time_s", "step", ".1f"))


def format_step(step: int, metrics: dict[str, float], warn_truncated: float = 1.0) -> str:
    parts = [f"{label} {metrics[key]:{fmt}}" for key, label, fmt in STEP_LINE if key in metrics]
    if metrics.get("truncated_frac", 0.0) > warn_truncated:
        parts.append(f"[red]cut {metrics['truncated_frac']:.0%}[/]")
    return f"step {step:4d}  " + "  ".join(parts)


def truncation_warning(share: float, where: str, max_tokens: int, looping: float | None = None) -> str:
    """The one line shown when too many completions stop at the length limit; ``looping``: the share of all
    completions that were cut while repeating themselves (a longer limit would not end those)."""
    line = (f"warning: {share:.0%} of {where} completions stopped at the length limit (rollout.max_tokens "
            f"{max_tokens}): raise rollout.max_tokens (and model.max_model_len if needed), or the scores measure the "
            "limit, not the model")
    if looping:
        line += (f"; {looping / share:.0%} of the cut ones repeat themselves (the model loops: a longer limit will "
                 "not end them; try sampling, few-shot examples or a larger model)")
    return line


def truncation_warnings(metrics: dict[str, float], threshold: float, max_tokens: int) -> list[str]:
    """A warning line for each ``<task>/truncated_frac`` (evaluations) above ``threshold``."""
    return [truncation_warning(v, k.removesuffix("/truncated_frac"), max_tokens) for k, v in metrics.items()
            if k.endswith("/truncated_frac") and v > threshold]


class StepProgress:
    """A rich progress bar (or nothing, when ``console`` is None) with reward and accuracy in its label; a
    warning line, once, when the share of cut completions passes ``warn_truncated``."""

    def __init__(self, console: Console | None, total: int, cfg=None) -> None:
        self.console, self.total, self.warned = console, total, False
        self.warn_truncated = 1.0 if cfg is None else cfg.rollout.warn_truncated
        self.max_tokens = None if cfg is None else cfg.rollout.max_tokens
        self._progress = None
        if console is not None:
            self._progress = Progress(TextColumn("[bold blue]training"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[live]}"), TimeElapsedColumn(),
                                      TimeRemainingColumn(), console=console, transient=False)
            self._task = self._progress.add_task("train", total=total, live="")

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if self._progress is None:
            return
        self._progress.console.print(format_step(step, metrics, self.warn_truncated), highlight=False,
                                     soft_wrap=True)
        if not self.warned and metrics.get("truncated_frac", 0.0) > self.warn_truncated:
            self.warned = True
            line = truncation_warning(metrics["truncated_frac"], f"step {step}'s training", self.max_tokens)
            self._progress.console.print(f"[red]{line}[/]", highlight=False)
        live = f"reward {metrics['reward_mean']:.3f}  acc {metrics['accuracy']:.3f}"
        self._progress.update(self._task, completed=step, live=live)

    def __enter__(self) -> "StepProgress":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


def print_eval_table(console: Console | None, summary) -> None:
    if console is None:
        return
    if summary.before or summary.after:  # no empty table when evaluation is off
        table = Table(title="held-out evaluation")
        for col in ("metric", "before", "after", "change"):
            table.add_column(col, justify="right" if col != "metric" else "left")
        for key in sorted(set(summary.before) | set(summary.after)):
            b, a = summary.before.get(key), summary.after.get(key)
            change = f"{a - b:+.3f}" if a is not None and b is not None else ""
            table.add_row(key, "" if b is None else f"{b:.3f}", "" if a is None else f"{a:.3f}", change)
        console.print(table)
    console.print(f"steps {summary.steps}  wall {summary.wall_s:.0f}s  peak memory {summary.peak_memory_gib:.2f} GiB"
                  + (f"  model saved to {summary.model_dir}" if summary.model_dir else ""))
    for line in getattr(summary, "warnings", ()):
        console.print(f"[red]{line}[/]", highlight=False)


def print_settings(console: Console | None, cfg) -> None:
    """The values the recipe left to the model, tasks and machine (and why), and a precision warning, at start."""
    from rlreason.recipe.defaults import bf16_warning, resolution_notes

    if console is None:
        return
    notes = resolution_notes(cfg)
    if notes:
        console.print("[dim]resolved: " + "; ".join(notes) + "[/]", highlight=False)
    warning = bf16_warning(cfg)
    if warning:
        console.print(f"[yellow]{warning}[/]", highlight=False)
