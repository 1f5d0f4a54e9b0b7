"""``rlreason verify``: JSONL records in, one JSON result per line out, through the same scoring runner as
training (worker processes, per-call deadlines).

A record holds a ``completion`` and the problem's fields: ``reference`` (required), and optionally ``id``,
``prompt``, ``meta``. Results: ``{"line", "id", "score", "correct", "details", "error"}``. A line that is not a
valid record gets a result with only ``line`` and ``error``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TextIO

from rlreason.types import Problem


def parse_record(line: str, verifier: str, number: int) -> tuple[str, Problem]:
    try:
        record = json.loads(line)
    except ValueError as e:
        raise ValueError(f"not JSON ({e.msg})") from None
    if not isinstance(record, dict):
        raise ValueError("a record must be a JSON object")
    for field in ("completion", "reference"):
        if field not in record:
            raise ValueError(f"missing field {field!r}")
    if not isinstance(record["completion"], str):
        raise ValueError("field 'completion' must be a string")
    meta = record.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError("field 'meta' must be an object")
    problem = Problem(id=str(record.get("id", number)), prompt=str(record.get("prompt", "")),
                      reference=record["reference"], verifier=verifier, task=str(record.get("task", "")), meta=meta)
    return record["completion"], problem


def score_stream(verifier: str, lines: Iterable[str], out: TextIO, workers: int = 2, timeout_s: float = 15.0,
                 chunk: int = 256) -> int:
    """Score every line; write results in input order as they are ready. Returns the number of invalid lines."""
    from rlreason.scoring import Scorer

    bad = 0
    with Scorer(workers=workers, timeout_s=timeout_s) as scorer:
        batch: list[tuple[int, object]] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                batch.append((number, parse_record(line, verifier, number)))
            except ValueError as e:
                batch.append((number, str(e)))
                bad += 1
            if len(batch) >= chunk:
                _flush(scorer, batch, out)
                batch = []
        _flush(scorer, batch, out)
    return bad


def _flush(scorer, batch: list, out: TextIO) -> None:
    items = [item for _, item in batch if not isinstance(item, str)]
    results = iter(scorer.score(items) if items else [])
    for number, item in batch:
        if isinstance(item, str):
            row = {"line": number, "error": item}
        else:
            r = next(results)
            row = {"line": number, "id": item[1].id, "score": r.score, "correct": r.correct, "details": r.details,
                   "error": r.error}
        out.write(json.dumps(row, default=repr) + "\n")
    out.flush()
