"""The console table of a continual run (``rlreason continual``)."""

from __future__ import annotations

from pathlib import Path


def print_report(console, report: dict, run_dir: Path) -> None:
    from rich.table import Table

    table = Table(title="held-out accuracy after each phase")
    table.add_column("after")
    for task in report["tasks"]:
        table.add_column(task, justify="right")
    table.add_row("base model", *(f"{v:.3f}" for v in report["base"]))
    for i, (task, row) in enumerate(zip(report["phases"], report["matrix"])):
        table.add_row(f"phase {i + 1} ({task})", *(f"{v:.3f}" for v in row))
    console.print(table)

    def show(value):
        return "-" if value is None else f"{value:+.3f}"

    console.print(f"average accuracy {report['average_accuracy']:.3f}  forgetting {show(report['forgetting'])}  "
                  f"backward transfer {show(report['backward_transfer'])}  forward transfer "
                  f"{show(report['forward_transfer'])}  wall {report['wall_s']:.0f}s  "
                  f"peak memory {report['peak_memory_gib']:.2f} GiB")
    if report.get("watched"):
        console.print("watched, never trained (after the last phase minus before the first): " + "  ".join(
            f"{task} {change:+.3f}" for task, change in report["watched"].items()))
    console.print(f"written: {run_dir / 'continual.json'}, {run_dir / 'continual.png'}")
