"""reasoning-gym's procedural datasets (PyPI ``reasoning-gym``, ~100 of them: ``rlreason tasks`` lists them) as
tasks. A recipe names ``reasoning_gym:NAME`` in ``tasks.train`` / ``tasks.eval``, or gives an entry with a config of
the dataset, a task name and a curriculum::

    tasks:
      train: [{reasoning_gym: leg_counting, name: legs, config: {max_animals: 3}, curriculum: {threshold: 0.7}}]
      eval: [reasoning_gym:leg_counting]

A problem is the dataset's question and an instruction to answer between ``<answer>`` tags, scored by the dataset's
own ``score_answer`` (verifier ``reasoning_gym``). The held-out problems come from a seed fixed by the dataset and
its config (the same in every run), the endless training stream from the run's seed, never with a held-out prompt.
With a curriculum (the dataset's own ``*Curriculum``) the training stream starts at level ``start`` and moves one
level up when the recent training accuracy reaches ``threshold`` (see ``rlreason.tasks.curriculum``); held-out
problems stay at the entry's config. The package is imported only when such a task is named.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import sys
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from rlreason.registry import UnknownNameError
from rlreason.section import Section
from rlreason.tasks.curriculum import CurriculumSettings, LevelWindow
from rlreason.types import Problem
from rlreason.verifiers import reasoning_gym as scoring
from rlreason.verifiers.reasoning_gym import ANSWER_TAG, dataset, missing_message

PREFIX = "reasoning_gym"
INSTRUCTION = f"Give only your final answer between <{ANSWER_TAG}> and </{ANSWER_TAG}>."
CHUNK = 500  # training problems per dataset seed (a level change starts the next seed)
RESERVED = ("seed", "size")  # config fields rlreason sets (the run's seed; the held-out set's size)


class ReasoningGymSpec(Section):
    """A reasoning-gym dataset as a task, with its config and an optional curriculum (see
    ``rlreason.tasks.reasoning_gym``)."""

    reasoning_gym: str = Field(description="a reasoning-gym dataset (rlreason tasks lists them)")
    name: str | None = Field(None, description="task name (default: rg_ and the dataset's name)")
    config: dict[str, Any] = Field({}, description="fields of the dataset's config class (min_animals: 1, ...)")
    curriculum: CurriculumSettings | None = Field(None, description="raise the training stream's difficulty level "
                                                  "as the training accuracy rises")
    held_out: int = Field(200, ge=1, description="held-out problems (the evaluation set)")
    max_tokens: int | None = Field(None, ge=1, description="the usual generation budget of this task (used when "
                                   "rollout.max_tokens is null; default 512)")

    @property
    def task_name(self) -> str:
        return self.name or default_name(self.reasoning_gym)

    @model_validator(mode="after")
    def _register(self) -> "ReasoningGymSpec":
        from rlreason.tasks.registry import TASKS

        known = TASKS.get(self.task_name) if self.task_name in TASKS.names() else None
        if known is not None and not isinstance(known, ReasoningGymTask):
            raise ValueError(f"name: {self.task_name!r} is another task's; give this one another name")
        if known is None or known.spec != self:
            try:
                task = ReasoningGymTask.of(self)
            except UnknownNameError as e:
                raise ValueError(str(e)) from None
            TASKS.register(self.task_name, task, replace=lambda old: isinstance(old, ReasoningGymTask))
        return self


def default_name(dataset_name: str) -> str:
    """The task name of an entry without ``name:``."""
    return f"rg_{dataset_name}"


def _seed(*parts: object) -> int:
    """A dataset seed (31 bits) from ``parts``: the same in every process and run."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little") >> 1


@dataclass
class _Stream:
    """One training stream's curriculum: the package's curriculum object and the accuracy window."""

    curriculum: Any
    window: LevelWindow


class ReasoningGymTask:
    """The task of one reasoning-gym dataset and config (see the module docstring)."""

    def __init__(self, spec: ReasoningGymSpec, name: str) -> None:
        """``spec``: the dataset, its config and curriculum; ``name``: the task's registered name. Raises
        UnknownNameError (no package, no such dataset) or ValueError (a config the dataset refuses)."""
        check(spec)
        self.spec, self.name, self.dataset, self.config = spec, name, spec.reasoning_gym, dict(spec.config)
        self.held_out_size, self.max_tokens = spec.held_out, spec.max_tokens or 512
        self._key = json.dumps([self.dataset, self.config], sort_keys=True)  # what the problems depend on
        self._held: list[Problem] | None = None
        self._streams: weakref.WeakValueDictionary[int, _Stream] = weakref.WeakValueDictionary()
        self._stream_ids = itertools.count()
        if spec.curriculum is not None:  # the starting level's config too
            validated(self.dataset, self._level_config(self._new_stream().curriculum))

    @classmethod
    def of(cls, spec: ReasoningGymSpec) -> "ReasoningGymTask":
        return cls(spec, spec.task_name)

    @property
    def description(self) -> str:
        extra = f" {json.dumps(self.config)}" if self.config else ""
        return f"{self.dataset}{extra}, {_about(self.dataset)}" + (" with a curriculum" if self.spec.curriculum else "")

    def _problem(self, entry: dict, where: dict, pid: str) -> Problem:
        return Problem(id=pid, prompt=f"{entry['question'].rstrip()}\n{INSTRUCTION}\n", reference=entry.get("answer"),
                       verifier="reasoning_gym", task=self.name,
                       meta={"reasoning_gym": where, "entry": entry, "answer_tag": ANSWER_TAG})

    def _draw(self, seed_parts: tuple, config: dict, size: int, extra: dict | None = None) -> Iterator[Problem]:
        """The problems of one dataset seed, in index order."""
        where = {"dataset": self.dataset, "config": config, "seed": _seed(self._key, *seed_parts), "size": size}
        items = dataset(self.dataset, config, where["seed"], size)
        for i in range(size):
            yield self._problem(items[i], {**where, "index": i, **(extra or {})}, f"{self.name}:{where['seed']}:{i}")

    def _held_out(self) -> list[Problem]:
        """The first ``held_out`` distinct problems of the evaluation seed (computed once)."""
        if self._held is None:
            seen, held = set(), []
            for problem in self._draw(("eval",), self.config, 4 * self.held_out_size):
                if problem.prompt not in seen:
                    seen.add(problem.prompt)
                    held.append(problem)
                if len(held) == self.held_out_size:
                    break
            self._held = held
        return self._held

    def eval_problems(self, n: int | None = None, data_dir: str | None = None) -> list[Problem]:
        """The first ``n`` held-out problems (``n <= held_out``; None: all)."""
        if n is not None and n > self.held_out_size:
            raise ValueError(f"task {self.name!r} holds out {self.held_out_size} problems; asked for {n}")
        held = self._held_out()
        return held if n is None else held[:n]

    def held_out_prompts(self) -> set[str]:
        return {p.prompt for p in self._held_out()}

    def train_problems(self, seed: int, data_dir: str | None = None) -> Iterator[Problem]:
        """Endless training problems from the run's ``seed`` (never a held-out prompt), at the curriculum's current
        level when there is one."""
        stream = self._new_stream()
        return self._train(seed, self.held_out_prompts(), stream)

    def _train(self, seed: int, exclude: set[str], stream: _Stream | None) -> Iterator[Problem]:
        sid = next(self._stream_ids) if stream is not None else None
        if stream is not None:
            self._streams[sid] = stream  # (weakly: the stream lives as long as this generator)
        for chunk in itertools.count():
            level = stream.window.level if stream is not None else 0
            config = self._level_config(stream.curriculum) if stream is not None else self.config
            extra = {"level": level, "stream": sid} if stream is not None else None
            for problem in self._draw(("train", seed, chunk), config, CHUNK, extra):
                if stream is not None and stream.window.level != level:
                    break  # moved up: the next seed, at the new level
                if problem.prompt not in exclude:
                    yield problem

    def _new_stream(self) -> _Stream | None:
        settings = self.spec.curriculum
        if settings is None:
            return None
        from reasoning_gym.factory import create_curriculum

        curriculum = create_curriculum(self.dataset)
        curriculum.set_global_level(settings.start)
        return _Stream(curriculum, LevelWindow(settings, curriculum.get_max_level()))

    def _level_config(self, curriculum: Any) -> dict:
        """The entry's config with the fields the curriculum sets at its current level."""
        made = curriculum.generate_configuration(defaults=dict(self.config))
        fields = set(self.config)
        for attr in curriculum.attributes.values():
            fields.update(f for f in (getattr(attr, n, None) for n in ("field_name", "lower_field_name",
                                                                         "upper_field_name")) if f)
        return {f: _plain(getattr(made, f)) for f in sorted(fields)}

    def observe(self, problem: Problem, accuracy: float) -> None:
        """A training problem's group accuracy (the drivers call this): may raise its stream's level."""
        where = problem.meta.get("reasoning_gym", {})
        stream = self._streams.get(where.get("stream")) if "stream" in where else None
        if stream is not None and stream.window.observe(where["level"], accuracy):
            before = stream.window.level
            if stream.curriculum.increment_global_level():
                stream.window.level = stream.curriculum.get_max_level()
                print(f"curriculum: {self.name} level {before} -> {stream.window.level} (training accuracy reached "
                      f"{stream.window.settings.threshold:g} over {stream.window.settings.window} groups)",
                      file=sys.stderr, flush=True)

    @property
    def has_fewshot(self) -> bool:
        return bool(self.fewshot_examples(1))

    def fewshot_examples(self, k: int, data_dir: str | None = None) -> list[tuple[str, str]]:
        """``k`` (prompt, answer in tags) examples from a seed of their own (never a held-out prompt; entries
        without a single right answer are skipped)."""
        held, out = self.held_out_prompts(), []
        for problem in self._draw(("fewshot",), self.config, max(4 * k, 20)):
            if problem.reference is not None and problem.prompt not in held and len(out) < k:
                out.append((problem.prompt, f"<{ANSWER_TAG}>{problem.reference}</{ANSWER_TAG}>"))
        return out


def _plain(value: Any) -> Any:
    """A config value as JSON has it (tuples as lists), so problems' meta survives any serialisation."""
    return json.loads(json.dumps(value))


def check(spec: ReasoningGymSpec) -> None:
    """UnknownNameError without the package or for an unknown dataset (with close matches); ValueError for a
    config or curriculum the dataset does not have."""
    name = spec.reasoning_gym
    if not scoring.installed():  # (the module attribute: tests pretend it is missing)
        raise UnknownNameError(missing_message(name))
    from reasoning_gym.factory import CURRICULA, DATASETS

    if name not in DATASETS:
        close = difflib.get_close_matches(name, list(DATASETS), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownNameError(f"unknown reasoning-gym dataset {name!r}{hint} ({len(DATASETS)} datasets: "
                               "rlreason tasks lists them)")
    reserved = sorted(set(spec.config) & set(RESERVED))
    if reserved:
        raise ValueError(f"config: {', '.join(reserved)} is set by rlreason (the run's seed; held_out)")
    if spec.curriculum is not None and name not in CURRICULA:
        raise ValueError(f"curriculum: reasoning-gym has no curriculum for {name!r}")
    validated(name, spec.config)


def validated(name: str, config: dict) -> dict:
    """``config``, when the dataset accepts it (else ValueError naming the field or the dataset's complaint)."""
    from reasoning_gym.factory import DATASETS

    fields = sorted(f for f in DATASETS[name][1].__dataclass_fields__ if f not in RESERVED)
    for key in config:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"config: {name} has no field {key!r}{hint} (allowed: {', '.join(fields)})")
    try:
        dataset(name, config)
    except (AssertionError, TypeError, ValueError) as e:  # the config class's validate()
        raise ValueError(f"config: {name} refuses {json.dumps(config)} ({e or type(e).__name__})") from None
    return config


def resolve(name: str) -> ReasoningGymTask:
    """The task ``reasoning_gym:NAME``: the dataset with its default config."""
    return ReasoningGymTask(ReasoningGymSpec.model_construct(reasoning_gym=name, name=None, config={},
                                                             curriculum=None, held_out=200, max_tokens=None),
                            f"{PREFIX}:{name}")


def listing() -> dict[str, str]:
    """``reasoning_gym:NAME`` and the dataset's description, for each dataset (one line without the package)."""
    if not scoring.installed():
        return {f"{PREFIX}:NAME": f"reasoning-gym's ~100 procedural datasets ({missing_message('NAME')})"}
    from reasoning_gym.factory import CURRICULA, DATASETS

    return {f"{PREFIX}:{name}": _about(name) + (" (curriculum)" if name in CURRICULA else "")
            for name in sorted(DATASETS)}


def _about(name: str) -> str:
    """reasoning-gym's category of the dataset and the first line of its docstring."""
    from reasoning_gym.factory import DATASETS

    cls = DATASETS[name][0]
    doc = ((cls.__doc__ or "").strip().splitlines() or [""])[0].rstrip(".")
    return f"reasoning-gym {cls.__module__.split('.')[1]}" + (f": {doc}" if doc else "")
