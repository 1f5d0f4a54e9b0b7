"""Training problems from a stream that other processes keep writing: a JSONL file they append to, or a directory
that gains JSONL files (read in name order). One problem per line::

    {"id": "q17", "prompt": "12+30=?\\n", "reference": "42", "verifier": "exact_answer", "task": "addition"}

``id`` defaults to the line's position, ``verifier`` to ``exact_answer``, ``task`` to ``stream``. The stream is
closed by a line ``{"end": true}`` (or, for a directory, a file named ``END``). Only complete lines (ending in a
newline) are read, so a writer caught mid-line is read on the next poll. The reader's position (file and byte
offset, problems consumed) is a small JSON record: the driver saves it after each trained step and a new reader
starts from it, so a stopped run continues where it was, with no problem trained twice and none skipped.
A line that is not a JSON object with a ``prompt`` is skipped and counted (``bad_lines``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rlreason.types import Problem


@dataclass
class StreamPosition:
    file: str = ""  # name of the file being read ("" before the first)
    offset: int = 0  # byte offset of the next unread line in it
    consumed: int = 0  # problems handed out so far
    bad_lines: int = 0
    closed: bool = False  # the end marker was read (a run started again on a closed stream ends at once)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)  # atomic: a crash leaves the old position or the new one

    @classmethod
    def load(cls, path: Path) -> "StreamPosition":
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()


class StreamReader:
    def __init__(self, source: str | Path, position: StreamPosition | None = None, poll_s: float = 0.2) -> None:
        self.source, self.poll_s = Path(source), poll_s
        self.position = position or StreamPosition()

    @property
    def closed(self) -> bool:
        return self.position.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self.position.closed = value

    def _files(self) -> list[Path]:
        if self.source.is_dir():
            return sorted(p for p in self.source.iterdir() if p.suffix == ".jsonl")
        return [self.source] if self.source.exists() else []

    def poll(self, limit: int) -> list[Problem]:
        """Up to ``limit`` new problems that are complete now (never waits); nothing once the stream is closed."""
        out: list[Problem] = []
        if self.closed:
            return out
        files = self._files()
        names = [f.name for f in files]
        if self.position.file and self.position.file not in names:
            raise FileNotFoundError(f"tasks.stream: {self.position.file!r} vanished from {self.source}")
        start = names.index(self.position.file) if self.position.file else 0
        for f in files[start:]:
            if f.name != self.position.file:
                self.position.file, self.position.offset = f.name, 0
            self._read(f, limit - len(out), out)
            if len(out) >= limit or self.closed:
                return out
        if self.source.is_dir() and (self.source / "END").exists():
            self.closed = True
        return out

    def _read(self, path: Path, limit: int, out: list[Problem]) -> None:
        with open(path, "rb") as f:
            f.seek(self.position.offset)
            while len(out) < limit:
                line = f.readline()
                if not line.endswith(b"\n"):
                    return  # nothing more, or a line still being written
                self.position.offset += len(line)
                problem = self._parse(line)
                if problem is not None:
                    out.append(problem)
                if self.closed:
                    return

    def _parse(self, line: bytes) -> Problem | None:
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and row.get("end") is True:
            self.closed = True
            return None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            if line.strip():
                self.position.bad_lines += 1
            return None
        self.position.consumed += 1
        return Problem(id=str(row.get("id", f"stream:{self.position.consumed}")), prompt=row["prompt"],
                       reference=row.get("reference"), verifier=row.get("verifier", "exact_answer"),
                       task=row.get("task", "stream"), meta=row.get("meta", {}))

    def take(self, n: int, timeout_s: float | None = None) -> list[Problem]:
        """``n`` problems, waiting for writers as needed; fewer only when the stream closes (or the timeout
        passes)."""
        batch, start = [], time.monotonic()
        while len(batch) < n:
            batch += self.poll(n - len(batch))
            if len(batch) >= n or self.closed:
                break
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                break
            time.sleep(self.poll_s)
        return batch
