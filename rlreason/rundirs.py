"""Where a run writes: never into another run's directory.

A new run of recipe name N gets ``<output.dir>/N``, or ``N-2``, ``N-3``... when earlier runs hold those; only
``--resume`` continues an existing one (the newest). The command decides once, before anything starts, and passes
the choice into the recipe (``output.run``), so every part of the run sees the same directory.
"""

from __future__ import annotations

import re
from pathlib import Path


def _numbered(base: Path) -> list[tuple[int, Path]]:
    pattern = re.compile(re.escape(base.name) + r"-(\d+)")
    found = [(1, base)] if base.exists() else []
    if base.parent.is_dir():
        found += [(int(m.group(1)), p) for p in base.parent.iterdir() if (m := pattern.fullmatch(p.name))]
    return sorted(found)


def choose_run_dir(base: Path, resume: bool) -> tuple[Path, bool]:
    """(directory, whether it continues an existing run): the newest existing one with ``resume``, else the first
    free one of ``base``, ``base-2``, ``base-3``..."""
    existing = _numbered(base)
    if resume and existing:
        return existing[-1][1], True
    if not existing:
        return base, False
    return base.with_name(f"{base.name}-{existing[-1][0] + 1}"), False
