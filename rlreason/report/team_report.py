"""What ``rlreason team`` reports: held-out accuracy of each member alone, the oracle router (the best member per
problem), the team before and after training its coordinator, per task and mixed; the routing matrix (which member
and role got which task's turns) as a table and a picture; turns and tokens per episode. Written to ``team.json``
and ``routing.png``."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def oracle(alone: dict[str, dict], tasks: list[str]) -> dict:
    """The best member per problem: a problem counts as the best of the members' mean scores on it."""
    task_of = {i: t for r in alone.values() for i, t in r["task_of"].items()}
    best = {i: max(r["per_problem"].get(i, 0.0) for r in alone.values()) for i in task_of}
    per_task = {t: [v for i, v in best.items() if task_of[i] == t] for t in tasks}
    return {"tasks": {t: statistics.fmean(v) if v else 0.0 for t, v in per_task.items()},
            "mixed": statistics.fmean(best.values()) if best else 0.0}


def routing_matrix(routing: dict[str, dict[str, int]], tasks: list[str], columns: list[str]
                   ) -> tuple[list[str], list[list[float]]]:
    """Columns ``member/role`` (every pair of the pool, then any other seen); row t: the share of task t's turns
    each column wrote."""
    columns = columns + sorted({c for counts in routing.values() for c in counts} - set(columns))
    rows = []
    for t in tasks:
        counts = [routing.get(t, {}).get(c, 0) for c in columns]
        total = sum(counts) or 1
        rows.append([n / total for n in counts])
    return columns, rows


def plot_routing(path: Path, tasks: list[str], columns: list[str], rows: list[list[float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.4 + 1.3 * len(columns), 1.6 + 0.6 * len(tasks)), dpi=120)
    ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v > 0.6 else "black", fontsize=9)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(run_dir: Path, report: dict, console=None) -> dict:
    tasks = list(report["team"]["tasks"])
    report["oracle"] = oracle(report["alone"], tasks)
    best = max(report["alone"], key=lambda m: report["alone"][m]["mixed"])
    report["best_member"] = {"name": best, "mixed": report["alone"][best]["mixed"]}
    pairs = [f"{m}/{r['name']}" for m in report["members"] for r in report["roles"]]
    columns, rows = routing_matrix(report["team"]["routing"], tasks, pairs)
    report["routing"] = {"columns": columns, "tasks": tasks, "shares": rows}
    (run_dir / "team.json").write_text(json.dumps(report, indent=2))
    plot_routing(run_dir / "routing.png", tasks, columns, rows,
                 f"team routing: share of each task's turns\n(held-out mixed accuracy {report['team']['mixed']:.3f})")
    if console is not None:
        print_report(console, report, run_dir)
    return report


def print_report(console, report: dict, run_dir: Path) -> None:
    from rich.table import Table

    tasks = report["routing"]["tasks"]
    table = Table(title="held-out accuracy: each member alone, the team, the oracle router")
    for name in ("", *tasks, "mixed", "turns", "tokens"):
        table.add_column(name, justify="right" if name else "left")
    for label, r in [*((m, r) for m, r in report["alone"].items()), ("team (before)", report["before"]),
                     (f"team ({report['optimizer']})", report["team"])]:
        table.add_row(label, *(f"{r['tasks'][t]:.3f}" for t in tasks), f"{r['mixed']:.3f}", f"{r['turns']:.2f}",
                      f"{r['tokens']:.1f}")
    o = report["oracle"]
    table.add_row("oracle", *(f"{o['tasks'][t]:.3f}" for t in tasks),
                  f"{o['mixed']:.3f}", "-", "-")
    console.print(table)
    routing = Table(title="routing: share of each task's turns")
    for name in ("task", *report["routing"]["columns"]):
        routing.add_column(name, justify="right" if name != "task" else "left")
    for t, row in zip(tasks, report["routing"]["shares"]):
        routing.add_row(t, *(f"{v:.2f}" for v in row))
    console.print(routing)
    gain = report["team"]["mixed"] - report["best_member"]["mixed"]
    console.print(f"team {report['team']['mixed']:.3f} vs best member ({report['best_member']['name']}) "
                  f"{report['best_member']['mixed']:.3f}: {gain:+.3f}; oracle {o['mixed']:.3f}; wall "
                  f"{report['wall_s']:.0f}s; written: {run_dir / 'team.json'}, {run_dir / 'routing.png'}")
