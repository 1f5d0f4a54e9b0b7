"""What a continual run learned and forgot, from its accuracy matrix (Lopez-Paz & Ranzato, GEM, arXiv 1706.08840).

``base[j]``: held-out accuracy on task j before any training; ``R[i][j]``: on task j after phase i (phase i trains
task i's stream; a task may come back in a later phase, so j indexes the distinct tasks). With T phases:
- average accuracy: mean_j R[T-1][j];
- backward transfer BWT: mean over tasks last trained before the last phase of R[T-1][j] - R[p(j)][j], with p(j)
  the last phase that trained task j (negative: forgetting);
- forgetting: mean over the same tasks of max_{i < T-1} R[i][j] - R[T-1][j] (the best it ever was, minus now);
- forward transfer FWT: mean over tasks not trained in phase 0 of R[f(j)-1][j] - base[j], with f(j) the first
  phase that trains j (what earlier phases did for a task before it was trained).
Columns of tasks no phase trains (watched: ``tasks.eval``) are in the matrix and in ``watched`` (final - base),
outside the averages above.
Plain Python on lists: no torch, so reports can be recomputed anywhere.
"""

from __future__ import annotations

import statistics
from pathlib import Path


def summarize(tasks: list[str], phase_tasks: list[str], base: list[float], matrix: list[list[float]]) -> dict:
    """Metrics of one run. ``tasks``: the distinct tasks (matrix columns); ``phase_tasks[i]``: phase i's task."""
    last = len(matrix) - 1
    final = matrix[last]
    trained_at = {t: [i for i, p in enumerate(phase_tasks) if p == t] for t in tasks}
    earlier = [j for j, t in enumerate(tasks) if trained_at[t] and trained_at[t][-1] < last]
    later = [j for j, t in enumerate(tasks) if trained_at[t] and trained_at[t][0] > 0]
    bwt = [final[j] - matrix[trained_at[tasks[j]][-1]][j] for j in earlier]
    forgetting = [max(matrix[i][j] for i in range(last)) - final[j] for j in earlier]
    fwt = [matrix[trained_at[tasks[j]][0] - 1][j] - base[j] for j in later]
    trained = [j for j, t in enumerate(tasks) if trained_at[t]]
    watched = {t: final[j] - base[j] for j, t in enumerate(tasks) if not trained_at[t]}
    return {"tasks": tasks, "phases": phase_tasks, "base": base, "matrix": matrix, "watched": watched,
            "average_accuracy": statistics.fmean(final[j] for j in trained),
            "backward_transfer": statistics.fmean(bwt) if bwt else None,
            "forgetting": statistics.fmean(forgetting) if forgetting else None,
            "forward_transfer": statistics.fmean(fwt) if fwt else None}


def heatmap(report: dict, path: Path, title: str = "") -> Path:
    """A PNG of the accuracy matrix: rows = after each phase (and the base model), columns = tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [report["base"], *report["matrix"]]
    labels = ["base"] + [f"after {i + 1}: {t}" for i, t in enumerate(report["phases"])]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(report["tasks"]), 1.2 + 0.5 * len(rows)))
    image = ax.imshow(rows, cmap="viridis", vmin=0.0, vmax=max(1e-9, max(max(r) for r in rows)), aspect="auto")
    ax.set_xticks(range(len(report["tasks"])), report["tasks"])
    ax.set_yticks(range(len(rows)), labels)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 * max(
                max(r) for r in rows) else "black", fontsize=9)
    ax.set_xlabel("held-out accuracy on task")
    ax.set_title(title or "accuracy matrix")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
