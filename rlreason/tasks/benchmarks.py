"""Benchmark tasks read from a data directory (``tasks.data_dir`` or ``$RLREASON_DATA_DIR``), with the Hugging
Face hub as the fallback for users online. Each benchmark is a small spec: where its files are, how a record
becomes a ``Problem`` (prompt, gold reference, verifier), and which split trains and which evaluates.

Prompt templates: ``plain`` (a base model continues the text) and ``chat`` (the same instruction as the user
message; the rollout engine applies the model's chat template to ``problem.meta["messages"]``).
"""

from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rlreason.types import Problem

DATA_DIR_ENV = "RLREASON_DATA_DIR"
MATH_INSTRUCTION = "Solve the problem step by step. Put the final answer in \\boxed{}."


def last_boxed(text: str) -> str:
    from rlreason.verifiers.math_equiv import boxed_contents

    boxes = boxed_contents(text)
    if not boxes:
        raise ValueError("solution has no \\boxed{} answer")
    return boxes[-1].strip()


def _math_problem(task: str, pid: str, question: str, gold: str) -> Problem:
    return Problem(id=f"{task}:{pid}", prompt=f"{question}\n{MATH_INSTRUCTION}\n", reference=gold,
                   verifier="math_answer", task=task)


def _gsm8k(r: dict, i: int) -> Problem:
    return _math_problem("gsm8k", str(i), r["question"], r["answer"].split("####")[-1].strip().replace(",", ""))


def _gsm8k_demo(r: dict) -> str:
    """A worked GSM8K solution as a few-shot example: calculator notes (<<2*3=6>>) dropped, the answer boxed as
    the instruction asks."""
    work, _, answer = re.sub(r"<<[^>]*>>", "", r["answer"]).rpartition("####")
    return f"{work.strip()}\nThe final answer is \\boxed{{{answer.strip().replace(',', '')}}}."


def _math(r: dict, i: int) -> Problem:
    return _math_problem("math", r.get("unique_id", str(i)), r["problem"], last_boxed(r["solution"]))


def _math500(r: dict, i: int) -> Problem:
    return _math_problem("math500", r["unique_id"], r["problem"], r["answer"])


def _aime(task: str) -> Callable[[dict, int], Problem]:
    def convert(r: dict, i: int) -> Problem:
        problem = r["problem"].replace("\x0c", "\\f")  # AIME 2025 copy 1: "\frac" decoded as a form feed
        return _math_problem(task, str(r.get("id", i)), problem, str(r["answer"]))
    return convert


def _humaneval(r: dict, i: int) -> Problem:
    prelude = "\n".join(line for line in r["prompt"].splitlines() if line.startswith(("import ", "from ")))
    ref = {"format": "humaneval", "prompt": r["prompt"], "test": r["test"], "entry_point": r["entry_point"],
           "prelude": prelude}
    return Problem(id=r["task_id"], prompt=r["prompt"], reference=ref, verifier="python_tests", task="humaneval")


def _mbpp(r: dict, i: int) -> Problem:
    tests = list(r["test_list"])
    called = set(re.findall(r"([A-Za-z_]\w*)\s*\(", " ".join(tests)))
    defined = re.findall(r"^def\s+([A-Za-z_]\w*)", r["code"], re.MULTILINE)
    entry = next((name for name in defined if name in called), defined[0] if defined else "")
    prompt = (f"You are an expert Python programmer, and here is your task: {r['prompt']} "
              f"Your code should pass these tests:\n\n" + "\n".join(tests) + "\n")
    ref = {"format": "mbpp", "tests": tests, "test_imports": list(r.get("test_imports", [])), "entry_point": entry}
    return Problem(id=f"mbpp:{r['task_id']}", prompt=prompt, reference=ref, verifier="python_tests", task="mbpp")


@dataclass(frozen=True)
class Benchmark:
    """A dataset-backed task. ``files``: split -> path under the data dir; ``hub``: split -> (repo, config, split)."""

    name: str
    description: str
    files: dict[str, str]
    hub: dict[str, tuple[str, str | None, str]]
    convert: Callable[[dict, int], Problem]
    train_split: str | None = None  # None: evaluation only
    eval_split: str = "test"
    keep: Callable[[dict], bool] | None = None  # row filter (MBPP's test range)
    gold: Callable[[dict], str] | None = None  # the reference solution as a completion (for checks)
    max_tokens: int = 512  # the usual generation budget (rollout.max_tokens when a recipe leaves it null)
    fewshot_from: str | None = None  # few-shot examples: "split", or "benchmark:split" of another; never eval rows
    fewshot_rows: Callable[[dict], bool] | None = None  # which rows of that split may be examples
    demo: Callable[[dict], str] | None = None  # a record's worked solution, as a few-shot example shows it

    @property
    def has_fewshot(self) -> bool:
        return self.fewshot_from is not None

    def records(self, split: str, data_dir: str | None = None) -> list[dict]:
        base = data_dir or os.environ.get(DATA_DIR_ENV)
        if base and (Path(base) / self.files[split]).is_file():
            from rlreason.tasks.files import jsonl_rows

            return jsonl_rows(Path(base) / self.files[split])
        return self._from_hub(split, base)

    def _from_hub(self, split: str, base: str | None) -> list[dict]:
        where = f"{Path(base) / self.files[split]}" if base else f"no data dir (set tasks.data_dir or ${DATA_DIR_ENV})"
        try:
            from datasets import load_dataset

            repo, config, hub_split = self.hub[split]
            return [dict(r) for r in load_dataset(repo, config, split=hub_split)]
        except Exception as e:  # offline, or no such dataset
            raise FileNotFoundError(f"task {self.name!r}: {where} not found and the Hugging Face hub failed "
                                    f"({type(e).__name__}: {str(e)[:120]})") from None

    def problems(self, split: str, data_dir: str | None = None) -> list[Problem]:
        """The split's rows as problems; a row missing a field is skipped and counted (ValueError when most are)."""
        rows, out, bad = self.records(split, data_dir), [], []
        for i, r in enumerate(rows):
            try:
                if self.keep is None or self.keep(r):
                    out.append(self.convert(r, i))
            except (KeyError, ValueError, TypeError, AttributeError):
                bad.append(i + 1)
        if bad and len(bad) >= len(out):
            raise ValueError(f"task {self.name!r}: {len(bad)} of {len(rows)} rows of {split} lack the fields it needs "
                             f"(first: row {bad[0]})")
        if bad:
            print(f"warning: task {self.name!r}: skipped {len(bad)} malformed row(s) of {split}: "
                  f"{', '.join(map(str, bad[:10]))}", file=sys.stderr)
        return out

    def eval_problems(self, n: int | None = None, data_dir: str | None = None) -> list[Problem]:
        problems = self.problems(self.eval_split, data_dir)
        return problems if n is None else problems[:n]

    def fewshot_examples(self, k: int, data_dir: str | None = None) -> list[tuple[str, str]]:
        """``k`` worked (prompt, solution) examples from ``fewshot_from``, picked with a fixed seed."""
        if self.fewshot_from is None:
            raise ValueError(f"task {self.name!r} has no training split to take few-shot examples from")
        other, _, split = self.fewshot_from.rpartition(":")
        source = next(b for b in BENCHMARKS if b.name == other) if other else self
        rows = [r for r in source.records(split, data_dir) if self.fewshot_rows is None or self.fewshot_rows(r)]
        picked = random.Random(f"{self.name}:fewshot").sample(range(len(rows)), min(k, len(rows)))
        return [(source.convert(rows[i], i).prompt, source.demo(rows[i])) for i in picked]

    def train_problems(self, seed: int, data_dir: str | None = None) -> Iterator[Problem]:
        """Endless shuffled epochs over the train split (never the eval split's prompts)."""
        if self.train_split is None:
            raise ValueError(f"task {self.name!r} is for evaluation only (no train split)")
        problems = self.problems(self.train_split, data_dir)
        if self.train_split == self.eval_split:
            held_out = {p.prompt for p in self.eval_problems(None, data_dir)}
            problems = [p for p in problems if p.prompt not in held_out]
        rng = random.Random(f"{self.name}:{seed}")
        while True:
            rng.shuffle(problems)
            yield from problems


def _mbpp_test_range(r: dict) -> bool:
    return 11 <= int(r["task_id"]) <= 510


_BOXED_ANSWER = {"gold": lambda r: f"\\boxed{{{r['answer']}}}", "fewshot_from": "math:train"}  # (MATH's demos)
BENCHMARKS = [
    Benchmark("gsm8k", "grade-school math word problems (answer after ####)",
              {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
              {"train": ("openai/gsm8k", "main", "train"), "test": ("openai/gsm8k", "main", "test")},
              _gsm8k, train_split="train", gold=lambda r: r["answer"], max_tokens=512, fewshot_from="train",
              demo=_gsm8k_demo),
    Benchmark("math", "MATH competition problems (Hendrycks), boxed answers",
              {"train": "math/train.jsonl", "test": "math/test.jsonl"},
              {"train": ("EleutherAI/hendrycks_math", None, "train"), "test": ("EleutherAI/hendrycks_math", None,
                                                                                "test")},
              _math, train_split="train", gold=lambda r: r["solution"], max_tokens=1024, fewshot_from="train",
              demo=lambda r: r["solution"]),
    Benchmark("math500", "MATH-500 (PRM800K test split)", {"test": "math500/test.jsonl"},
              {"test": ("HuggingFaceH4/MATH-500", None, "test")}, _math500, max_tokens=1024, **_BOXED_ANSWER),
    Benchmark("aime24", "AIME 2024 I and II", {"test": "aime24/test.jsonl"},
              {"test": ("HuggingFaceH4/aime_2024", None, "train")}, _aime("aime24"), max_tokens=4096,
              **_BOXED_ANSWER),
    Benchmark("aime25", "AIME 2025 I and II", {"test": "aime25/test_mathevalharness.jsonl"},
              {"test": ("yentinglin/aime_2025", None, "train")}, _aime("aime25"), max_tokens=4096, **_BOXED_ANSWER),
    Benchmark("humaneval", "HumanEval: complete the function; check(candidate) tests",
              {"test": "humaneval/HumanEval.jsonl"}, {"test": ("openai/openai_humaneval", None, "test")},
              _humaneval, gold=lambda r: r["canonical_solution"], max_tokens=512),
    Benchmark("mbpp", "MBPP (sanitized): write the function; assert tests; eval on task ids 11-510",
              {"test": "mbpp/sanitized-mbpp.jsonl"}, {"test": ("google-research-datasets/mbpp", "sanitized", "test")},
              _mbpp, train_split=None, keep=_mbpp_test_range, gold=lambda r: r["code"], max_tokens=512,
              fewshot_from="test", fewshot_rows=lambda r: int(r["task_id"]) <= 10,  # MBPP's own prompt split
              demo=lambda r: r["code"]),
]
