"""Where a run writes: never into another run's directory.

A new run of recipe name N gets ``<output.dir>/N``, or ``N-2``, ``N-3``... when earlier runs of N hold those; only
``--resume`` continues an existing one (the newest run of N). Directories of other recipes (a run named ``N-7``,
say) are never taken for N's. The command decides once, before anything starts, claims the directory (created
there and then, so two runs started together cannot pick the same one) and passes the choice into the recipe
(``output.run``), so every part of the run sees the same directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml


def _run_name(directory: Path) -> str | None:
    try:
        return (yaml.safe_load((directory / "recipe.yaml").read_text()) or {}).get("name")
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def runs_of(base: Path) -> list[tuple[int, Path]]:
    """(number, directory) of the earlier runs of recipe name ``base.name`` under ``base.parent``, oldest first."""
    found = [(1, base)] if base.is_dir() else []
    pattern = re.compile(re.escape(base.name) + r"-(\d+)")
    if base.parent.is_dir():
        found += [(int(m.group(1)), p) for p in base.parent.iterdir()
                  if (m := pattern.fullmatch(p.name)) and _run_name(p) == base.name]
    return sorted(found)


def choose_run_dir(base: Path, resume: bool) -> tuple[Path, bool]:
    """(directory, whether it continues an existing run): the newest run of this name with ``resume``, else a new
    directory, created here (``base``, else the next free ``base-K``)."""
    ours = runs_of(base)
    if resume and ours:
        return ours[-1][1], True
    k = ours[-1][0] if ours else 0
    while True:
        candidate = base if k == 0 else base.with_name(f"{base.name}-{k + 1}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate, False
        except FileExistsError:
            k += 1
