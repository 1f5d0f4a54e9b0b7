"""PNG plots of a comparison: mean over seeds with a band of +-1 standard deviation, one colour per algorithm."""

from __future__ import annotations

import statistics
from pathlib import Path

from rlreason.compare.analysis import by_algorithm
from rlreason.compare.runs import RunRecord
from rlreason.compare.scaling import sigmoid_gain


def _figure(title: str, xlabel: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=120)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return plt, fig, ax


def _band(ax, xs: list[float], ys: list[list[float]], label: str, colour) -> None:
    mean = [statistics.fmean(y) for y in ys]
    sd = [statistics.stdev(y) if len(y) > 1 else 0.0 for y in ys]
    ax.plot(xs, mean, label=label, color=colour, linewidth=1.8)
    ax.fill_between(xs, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)], color=colour, alpha=0.18)


def _smooth(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def _save(plt, fig, ax, path: Path) -> Path:
    ax.legend(fontsize=8, ncols=2, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


LABELS = {"step": "step", "tokens": "generated tokens (thousands)", "seconds": "compute time (s, no evaluation)"}


def reward(runs: list[RunRecord], path: Path, axis: str) -> Path:
    """Training reward (moving average over 5 steps) against ``axis`` (as in ``heldout``)."""
    plt, fig, ax = _figure("Training reward (moving average over 5 steps)", LABELS[axis], "mean reward")
    for i, (name, group) in enumerate(by_algorithm(runs).items()):
        n = min(len(r.reward) for r in group)
        smooth = [_smooth(r.reward, 5) for r in group]
        xs = [statistics.fmean(_x(r, r.steps[j], axis) for r in group) for j in range(n)]
        _band(ax, xs, [[s[j] for s in smooth] for j in range(n)], name, f"C{i}")
    return _save(plt, fig, ax, path)


def heldout(runs: list[RunRecord], path: Path, axis: str) -> Path:
    """Held-out accuracy against ``axis``: ``step``, ``tokens`` (thousands generated) or ``seconds`` (compute)."""
    task = runs[0].task
    plt, fig, ax = _figure(f"Held-out {task} accuracy (mean +- sd over seeds)", LABELS[axis], "accuracy")
    for i, (name, group) in enumerate(by_algorithm(runs).items()):
        n = min(len(r.eval_steps) for r in group)
        xs = [statistics.fmean(_x(r, r.eval_steps[j], axis) for r in group) for j in range(n)]
        _band(ax, xs, [[r.eval_accuracy[j] for r in group] for j in range(n)], name, f"C{i}")
    return _save(plt, fig, ax, path)


def _x(run: RunRecord, step: int, axis: str) -> float:
    if axis == "step":
        return float(step)
    if axis == "tokens":
        return run.at_step(run.tokens, step) / 1e3
    return run.at_step(run.seconds, step)


def scaling_fits(runs: list[RunRecord], analysis: dict, path: Path) -> Path:
    """Each algorithm's held-out points against generated tokens, with its fitted ScaleRL curve and asymptote."""
    plt, fig, ax = _figure("ScaleRL fit: accuracy vs generated tokens", "generated tokens (thousands)", "accuracy")
    for i, (name, group) in enumerate(by_algorithm(runs).items()):
        colour = f"C{i}"
        pts = [(r.at_step(r.tokens, s) / 1e3, a) for r in group for s, a in zip(r.eval_steps, r.eval_accuracy)]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=colour, s=10, alpha=0.6)
        fit = analysis["algorithms"][name]["fit"]
        if fit is None:
            ax.plot([], [], color=colour, label=f"{name} (too few points to fit)")
            continue
        top = max(p[0] for p in pts) * 1e3
        xs = [top * k / 100 for k in range(1, 101)]
        ys = [fit["R0"] + (fit["A"] - fit["R0"]) * sigmoid_gain(x, fit["B"], fit["C_mid"]) for x in xs]
        ax.plot([x / 1e3 for x in xs], ys, color=colour, label=f"{name}: A={fit['A']:.2f}, B={fit['B']:.2f}")
        ax.axhline(fit["A"], color=colour, linestyle=":", linewidth=0.8)
    return _save(plt, fig, ax, path)


def all_plots(runs: list[RunRecord], analysis: dict, out: Path) -> list[Path]:
    names = {"step": "step", "tokens": "tokens", "seconds": "time"}
    plots = [heldout(runs, out / f"heldout_vs_{n}.png", axis) for axis, n in names.items()]
    plots += [reward(runs, out / f"reward_vs_{n}.png", axis) for axis, n in names.items()]
    return [*plots, scaling_fits(runs, analysis, out / "scaling.png")]
