"""Synthetic math for the tiny model: chains of additions and subtractions, solved step by step.

Prompt ``"23+45-17=?\\n"``; the worked answer writes one step per line and ends with ``#### 51`` (GSM8K-style
anchor, so the same verifier reads both). Intermediate results stay in 0..999 so digits never go negative.
"""

from __future__ import annotations

import random

from rlreason.types import Problem

MIN_OPERANDS, MAX_OPERANDS = 2, 4
MAX_OPERAND = 99


def _operands(rng: random.Random, symbols: str = "+-") -> tuple[list[int], list[str]]:
    count = rng.randint(MIN_OPERANDS, MAX_OPERANDS)
    while True:
        nums = [rng.randint(1, MAX_OPERAND) for _ in range(count)]
        ops = [rng.choice(symbols) for _ in range(count - 1)]
        total, ok = nums[0], True
        for op, n in zip(ops, nums[1:]):
            total = total + n if op == "+" else total - n
            ok &= 0 <= total <= 999
        if ok:
            return nums, ops


def worked_solution(nums: list[int], ops: list[str]) -> tuple[str, int]:
    """The step-by-step answer text and the final value."""
    lines, total = [], nums[0]
    for op, n in zip(ops, nums[1:]):
        new = total + n if op == "+" else total - n
        lines.append(f"{total}{op}{n}={new}")
        total = new
    lines.append(f"#### {total}")
    return "\n".join(lines), total


def sample_problem(rng: random.Random, symbols: str = "+-", task: str = "arithmetic") -> tuple[Problem, str]:
    """One problem and its worked solution (the SFT target); ``symbols``: the operators it may use."""
    nums, ops = _operands(rng, symbols)
    expr = str(nums[0]) + "".join(f"{op}{n}" for op, n in zip(ops, nums[1:]))
    solution, answer = worked_solution(nums, ops)
    prefix = "arith" if task == "arithmetic" else task
    problem = Problem(id=f"{prefix}:{expr}", prompt=f"{expr}=?\n", reference=str(answer), verifier="exact_answer",
                      task=task)
    return problem, solution


def sample_addition(rng: random.Random) -> tuple[Problem, str]:
    """Chains of additions only (a task family for continual learning)."""
    return sample_problem(rng, "+", "addition")


def sample_subtraction(rng: random.Random) -> tuple[Problem, str]:
    """Chains of subtractions only, never below 0 (a task family for continual learning)."""
    return sample_problem(rng, "-", "subtraction")
