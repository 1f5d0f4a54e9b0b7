"""reasoning-gym's own scoring (verifier ``reasoning_gym``): the completion's last ``<answer>...</answer>``, scored by
the dataset's ``score_answer(answer, entry)`` (1.0: right; some datasets give partial credit below 1, a few check
validity where many answers are right). The problem's ``meta["reasoning_gym"]`` names the dataset, its config,
seed, size and index, so any process can rebuild the entry; ``meta["entry"]`` carries it ready made. The package
(PyPI ``reasoning-gym``, ~0.7 s to import) is imported on first use, never by ``import rlreason.verifiers``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from typing import Any

from rlreason.types import Problem, VerifyResult
from rlreason.verifiers.base import verifier

INSTALL = "pip install 'rlreason[envs]'"
ANSWER_TAG = "answer"


def installed() -> bool:
    return importlib.util.find_spec("reasoning_gym") is not None


def missing_message(name: str) -> str:
    return f"reasoning_gym:{name} needs the reasoning-gym package: {INSTALL}"


@functools.lru_cache(maxsize=64)
def _dataset(name: str, config_json: str, seed: int, size: int) -> Any:
    from reasoning_gym import create_dataset

    return create_dataset(name, **json.loads(config_json), seed=seed, size=size)


def dataset(name: str, config: dict, seed: int = 0, size: int = 1) -> Any:
    """The ``ProceduralDataset`` ``name`` with ``config`` (keyword arguments of its config class), built once per
    process for each (config, seed, size)."""
    return _dataset(name, json.dumps(config, sort_keys=True), seed, size)


def entry_of(problem: Problem) -> dict:
    """The dataset entry the problem was made from (carried in ``meta["entry"]``, else generated again)."""
    if "entry" in problem.meta:
        return problem.meta["entry"]
    where = problem.meta["reasoning_gym"]
    return dataset(where["dataset"], where["config"], where["seed"], where["size"])[where["index"]]


@verifier("reasoning_gym")
def reasoning_gym_answer(completion: str, problem: Problem) -> VerifyResult:
    """reasoning-gym's score_answer on the last <answer>...</answer> (passed at 1.0)."""
    from reasoning_gym.utils import extract_answer

    answer = extract_answer(completion, tag_name=ANSWER_TAG)
    if answer is None:
        return VerifyResult(0.0, {"extracted": None})
    where = problem.meta["reasoning_gym"]
    try:  # the dataset scores with its config (its seed does not matter)
        score = float(dataset(where["dataset"], where["config"]).score_answer(answer, entry_of(problem)))
    except Exception as e:  # noqa: BLE001 - an answer a dataset cannot parse (prime_factorization: int("x")) is wrong
        return VerifyResult(0.0, {"extracted": answer, "unscorable": f"{type(e).__name__}: {e}"[:200]})
    return VerifyResult(score, {"extracted": answer})
