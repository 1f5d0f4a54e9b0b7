"""Exact final-answer checks for the synthetic tasks (and GSM8K-style ``#### N`` answers).

The verifier extracts the answer itself, from the last ``####`` anchor only; text with no anchor earns nothing,
so a completion cannot collect reward by listing many numbers.
"""

from __future__ import annotations

import re

from rlreason.types import Problem, VerifyResult
from rlreason.verifiers import verifier

_ANCHOR = re.compile(r"####\s*([^\n]*)")


def normalize_number(text: str) -> str:
    """Canonical text for a numeric answer: no commas, spaces, ``$`` or trailing ``.0``."""
    text = text.strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    if re.fullmatch(r"-?\d+\.0*", text):
        text = text.split(".")[0]
    return text


def extract_hash_answer(completion: str) -> str | None:
    """The text after the last ``####`` on its line, or None when there is no anchor."""
    found = _ANCHOR.findall(completion)
    return found[-1].strip() if found else None


def same_number(a: str, b: str) -> bool:
    return normalize_number(a) == normalize_number(b)


@verifier("exact_answer", same_answer=same_number)
def exact_answer(completion: str, problem: Problem) -> VerifyResult:
    """1.0 when the last ``#### answer`` equals the reference (numbers compared in canonical form)."""
    answer = extract_hash_answer(completion)
    if answer is None:
        return VerifyResult(0.0, {"extracted": None, "reason": "no '####' answer anchor"})
    ok = normalize_number(answer) == normalize_number(str(problem.reference))
    return VerifyResult(float(ok), {"extracted": answer})
