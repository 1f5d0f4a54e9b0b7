"""Synthetic code for the tiny model: write ``f(x)`` from input/output examples.

Prompt ``"f(0)=3 f(1)=5 f(2)=7 f(3)=9\\ndef f(x):\\n"``; a good answer is ``"    return x*2+3"``. The verifier runs
the function in a separate process on hidden inputs too, so any equivalent expression passes.
"""

from __future__ import annotations

import random

from rlreason.types import Problem

SHOWN_INPUTS = (0, 1, 2, 3)
HIDDEN_INPUTS = (4, 7, 10)


_SHAPES = (  # (weight, expression template, function of x, a, b); about 700 distinct functions in all
    (0.4, "x*{a}+{b}", lambda x, a, b: x * a + b),
    (0.2, "x*{a}-{b}", lambda x, a, b: x * a - b),
    (0.15, "x%{a}+{b}", lambda x, a, b: x % a + b),
    (0.15, "x//{a}+{b}", lambda x, a, b: x // a + b),
    (0.1, "x*x+{b}", lambda x, a, b: x * x + b),
)


def _function(rng: random.Random) -> tuple[str, callable]:
    _, template, fn = rng.choices(_SHAPES, weights=[s[0] for s in _SHAPES])[0]
    a, b = rng.randint(2, 9), rng.randint(0, 19)
    return template.format(a=a, b=b), lambda x: fn(x, a, b)


def sample_problem(rng: random.Random) -> tuple[Problem, str]:
    """One problem and its reference solution (the SFT target)."""
    expr, fn = _function(rng)
    shown = " ".join(f"f({x})={fn(x)}" for x in SHOWN_INPUTS)
    tests = [[x, fn(x)] for x in SHOWN_INPUTS + HIDDEN_INPUTS]
    problem = Problem(id=f"prog:{shown}", prompt=f"{shown}\ndef f(x):\n",
                      reference={"entry_point": "f", "tests": tests}, verifier="python_io", task="programs")
    return problem, f"    return {expr}"
