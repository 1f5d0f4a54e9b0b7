"""Shaping rewards, meant as weighted terms of a composite reward (``tasks.rewards`` in a recipe)::

    tasks:
      rewards:
        - {verifier: task, weight: 1.0}            # the problem's own verifier decides accuracy
        - {verifier: answer_format, weight: 0.1}
        - {verifier: length_penalty, weight: 0.5}
"""

from __future__ import annotations

import re

from rlreason.types import Problem, VerifyResult
from rlreason.verifiers.base import verifier


@verifier("answer_format")
def answer_format(completion: str, problem: Problem) -> VerifyResult:
    """1.0 when the completion holds exactly one ``<answer>...</answer>`` (tag: ``meta["answer_tag"]``) and ends
    with it; 0 otherwise."""
    tag = re.escape(problem.meta.get("answer_tag", "answer"))
    blocks = list(re.finditer(rf"<{tag}>(.*?)</{tag}>", completion, re.DOTALL))
    ok = len(blocks) == 1 and blocks[0].group(1).strip() != "" and completion[blocks[0].end():].strip() == ""
    return VerifyResult(float(ok), {"answer_blocks": len(blocks)})


@verifier("length_penalty")
def length_penalty(completion: str, problem: Problem) -> VerifyResult:
    """0 up to ``meta["length_budget"]`` characters (default 2000), then falling linearly to -1 at twice that."""
    budget = int(problem.meta.get("length_budget", 2000))
    over = max(0, len(completion) - budget)
    return VerifyResult(-min(1.0, over / max(budget, 1)), {"chars": len(completion)})
