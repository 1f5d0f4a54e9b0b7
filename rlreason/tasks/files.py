"""Your own data as a task, without Python: a JSONL or Parquet file, or a Hugging Face dataset, with a column
mapping and a verifier, declared in the recipe::

    tasks:
      train: [{data: my.jsonl, prompt: question, reference: answer, verifier: math_answer}]

An inline entry in ``tasks.train`` / ``tasks.eval`` is moved to ``tasks.data`` and named (``name``, else the file's
stem); the task is then registered under that name and trains and evaluates like a built-in one. Held-out rows:
``eval_data`` (another file), else a fixed ``held_out`` share of the rows (shuffled with a seed that depends only
on the task's name, so every run holds out the same rows; 1.0: evaluation only). Problems: ``prompt`` (a text
column) or ``messages`` (a chat column, rendered with the model's chat template), ``reference`` (what the verifier
compares against), optional ``id``. A file that cannot be read, a missing column, or a file whose rows are mostly
unparseable is refused when the recipe is validated, naming the file and column; a few bad rows are skipped and
counted (``skipped_rows``) with their line numbers.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from rlreason.section import Section
from rlreason.types import Problem

SUFFIXES = (".jsonl", ".json", ".parquet")


class DataTaskSpec(Section):
    """A task read from your own data (see ``rlreason.tasks.files``)."""

    data: str = Field(description="a .jsonl or .parquet file, or a Hugging Face dataset id (repo/name)")
    verifier: str = Field(description="the verifier that scores completions (a registered name or module:function)")
    reference: str = Field(description="column with what the verifier compares against")
    prompt: str | None = Field(None, description="column with the prompt text")
    messages: str | None = Field(None, description="column with a chat (list of {role, content}) instead of prompt")
    id: str | None = Field(None, description="column with a stable row id (default: the row number)")
    name: str | None = Field(None, description="task name (default: the file's stem)")
    eval_data: str | None = Field(None, description="held-out rows from this file instead of a share of data")
    held_out: float = Field(0.1, gt=0.0, le=1.0, description="share of rows held out for evaluation (1.0: all)")
    config: str | None = Field(None, description="Hugging Face dataset config")
    split: str = Field("train", description="Hugging Face dataset split")
    solution: str | None = Field(None, description="column with a worked solution (for tasks.fewshot examples)")
    max_tokens: int | None = Field(None, ge=1, description="the usual generation budget of this task (used when "
                                   "rollout.max_tokens is null)")

    @field_validator("data", "eval_data")
    @classmethod
    def _absolute(cls, source: str | None) -> str | None:
        """A local file is recorded by its absolute path, so the saved recipe works from any directory."""
        return str(Path(source).resolve()) if source is not None and Path(source).is_file() else source

    @model_validator(mode="after")
    def _register(self) -> "DataTaskSpec":
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("set exactly one of prompt (a text column) and messages (a chat column)")
        from rlreason.tasks.registry import TASKS
        from rlreason.verifiers import VERIFIERS

        try:
            VERIFIERS.get(self.verifier)
        except KeyError as e:
            raise ValueError(f"verifier: {e}") from None
        known = TASKS.get(self.task_name) if self.task_name in TASKS.names() else None
        if known is not None and not isinstance(known, FileTask):
            raise ValueError(f"name: {self.task_name!r} is a built-in task; give your data another name")
        # the same spec validated again (a command loads its recipe twice, compare once per combination) reuses
        # the rows already read: the file is read once per process
        if known is None or known.spec != self:
            TASKS.register(self.task_name, FileTask.load(self), replace=lambda old: isinstance(old, FileTask))
        return self

    @property
    def task_name(self) -> str:
        return self.name or Path(self.data).stem.replace(".", "_")


def inline_data_tasks(values: dict) -> dict:
    """Move mapping entries of ``train`` / ``eval`` into ``data`` (your files), ``envs`` (entries with ``env:``) or
    ``reasoning_gym`` (entries with ``reasoning_gym:``), once per distinct entry, leaving their names."""
    if not isinstance(values, dict):
        return values
    moved = {k: list(values.get(k) or []) for k in ("data", "envs", "reasoning_gym")}
    for key in ("train", "eval"):
        entries = values.get(key)
        if not isinstance(entries, (list, tuple)):
            continue
        names = []
        for entry in entries:
            if isinstance(entry, dict):
                target = moved["envs" if "env" in entry else "reasoning_gym" if "reasoning_gym" in entry else "data"]
                if entry not in target:
                    target.append(entry)
                entry = entry.get("name") or (_env_task_name(entry) if "env" in entry else
                                              _gym_task_name(entry) if "reasoning_gym" in entry else
                                              Path(str(entry.get("data", ""))).stem.replace(".", "_"))
            names.append(entry)
        values = {**values, key: names}
    return {**values, **{k: v for k, v in moved.items() if v}}


def _env_task_name(entry: dict) -> str:  # (as rlreason.envs.tasks.EnvTaskSpec.task_name)
    return str(entry["env"]).replace(":", "_") + (f"_{entry['data']}" if entry.get("data") else "")


def _gym_task_name(entry: dict) -> str:  # (as rlreason.tasks.reasoning_gym.ReasoningGymSpec.task_name)
    from rlreason.tasks.reasoning_gym import default_name

    return default_name(str(entry["reasoning_gym"]))


def read_rows(source: str, config: str | None = None, split: str = "train") -> list[dict]:
    """Rows of a JSONL or Parquet file, or of a Hugging Face dataset split (ValueError naming the source)."""
    path = Path(source)
    if path.is_file():
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                return pq.read_table(path).to_pylist()
            except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one line
                raise ValueError(f"{source}: not a readable Parquet file ({type(e).__name__})") from None
        if path.suffix == ".json" and path.read_text(encoding="utf-8", errors="replace").lstrip().startswith("["):
            try:
                rows = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ValueError(f"{source}: not valid JSON ({e.msg}, line {e.lineno})") from None
            if not all(isinstance(r, dict) for r in rows):
                raise ValueError(f"{source}: a JSON array of objects expected")
            return rows
        if path.suffix in (".jsonl", ".json"):
            return jsonl_rows(path)
        raise ValueError(f"{source}: unsupported file type {path.suffix!r} (allowed: {', '.join(SUFFIXES)})")
    if path.suffix in SUFFIXES or path.parent != Path(".") and path.parent.exists() or source.count("/") != 1:
        raise ValueError(f"{source}: no such file")
    try:
        from datasets import load_dataset

        return [dict(r) for r in load_dataset(source, config, split=split)]
    except Exception as e:  # noqa: BLE001 - offline, or no such dataset
        raise ValueError(f"{source}: no such file, and the Hugging Face hub did not provide it "
                         f"({type(e).__name__}: {str(e)[:100]})") from None


def jsonl_rows(path: Path) -> list[dict]:
    rows, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad.append(number)
    if bad and len(bad) >= len(rows):
        raise ValueError(f"{path}: {len(bad)} of {len(bad) + len(rows)} lines are not JSON objects "
                         f"(first: line {bad[0]})")
    if bad:
        print(f"warning: {path}: skipped {len(bad)} unparseable line(s): {', '.join(map(str, bad[:10]))}",
              file=sys.stderr)
    return rows


@dataclass(frozen=True)
class FileTask:
    """A registered task over rows read once (see the module docstring)."""

    spec: DataTaskSpec
    train: tuple[Problem, ...] = field(repr=False)
    held: tuple[Problem, ...] = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.task_name

    @property
    def needs_chat_template(self) -> bool:
        return self.spec.messages is not None

    @property
    def description(self) -> str:
        return f"your data: {self.spec.data} ({len(self.train)} train, {len(self.held)} held-out rows)"

    @property
    def max_tokens(self) -> int | None:
        return self.spec.max_tokens

    @property
    def has_fewshot(self) -> bool:
        return self.spec.solution is not None and bool(self.train)

    def fewshot_examples(self, k: int, data_dir: str | None = None) -> list[tuple[str, str]]:
        """``k`` training rows with their ``solution`` column, picked with a fixed seed (never held-out rows)."""
        picked = random.Random(f"{self.name}:fewshot").sample(range(len(self.train)), min(k, len(self.train)))
        return [(self.train[i].prompt, str(self.train[i].meta["solution"])) for i in picked]

    @classmethod
    def load(cls, spec: DataTaskSpec) -> "FileTask":
        rows = read_rows(spec.data, spec.config, spec.split)
        if not rows:
            raise ValueError(f"{spec.data}: no rows")
        problems = [to_problem(spec, row, i) for i, row in enumerate(rows)]
        if spec.eval_data is not None:
            held = [to_problem(spec, row, i, "eval") for i, row in enumerate(read_rows(spec.eval_data))]
            return cls(spec, tuple(problems), tuple(held))
        order = list(range(len(problems)))
        random.Random(f"{spec.task_name}:held-out").shuffle(order)
        n_held = max(1, round(spec.held_out * len(problems)))
        held = sorted(order[:n_held])
        train = sorted(order[n_held:])
        return cls(spec, tuple(problems[i] for i in train), tuple(problems[i] for i in held))

    def eval_problems(self, n: int | None = None, data_dir: str | None = None) -> list[Problem]:
        return list(self.held if n is None else self.held[:n])

    def train_problems(self, seed: int, data_dir: str | None = None) -> Iterator[Problem]:
        """Endless shuffled epochs over the training rows (never a held-out prompt)."""
        if not self.train:
            raise ValueError(f"task {self.name!r} holds out every row (held_out: {self.spec.held_out}); nothing to "
                             "train on")
        held = {p.prompt for p in self.held}
        problems = [p for p in self.train if p.prompt not in held]
        if not problems:
            raise ValueError(f"task {self.name!r}: every training prompt is also a held-out prompt")
        rng = random.Random(f"{self.name}:{seed}")
        while True:
            rng.shuffle(problems)
            yield from problems


def to_problem(spec: DataTaskSpec, row: dict, index: int, part: str = "data") -> Problem:
    """One row as a ``Problem`` (ValueError naming the column and source when one is missing)."""
    source = spec.data if part == "data" else spec.eval_data
    for role in ("prompt", "messages", "reference", "id", "solution"):
        column = getattr(spec, role)
        if column is not None and column not in row:
            raise ValueError(f"{role}: no column {column!r} in {source} row {index + 1} "
                             f"(columns: {', '.join(sorted(row))})")
    meta, prompt = {}, None
    if spec.messages is not None:
        messages = row[spec.messages]
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "content" in m for m in messages):
            raise ValueError(f"messages: column {spec.messages!r} of {source} row {index + 1} is not a list of "
                             "{role, content}")
        meta["messages"] = [{"role": m.get("role", "user"), "content": m["content"]} for m in messages]
        prompt = "\n".join(str(m["content"]) for m in meta["messages"] if m["role"] == "user")
    else:
        prompt = str(row[spec.prompt])
    if spec.solution is not None:
        meta["solution"] = row[spec.solution]
    row_id = row[spec.id] if spec.id is not None else f"{part}{index}"
    return Problem(id=f"{spec.task_name}:{row_id}", prompt=prompt, reference=row[spec.reference],
                   verifier=spec.verifier, task=spec.task_name, meta=meta)
