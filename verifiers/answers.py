"""Exact final-answer checks for the synthetic tasks (and GSM8K-style ``#### N`` answers), and the flexible
answer protocol.

The verifier extracts the answer itself, from the last ``####`` anchor only; text with no anchor earns nothing,
so a completion cannot collect reward by listing many numbers. That is the *strict* protocol, the one trained on.
The *flexible* protocol (lm-eval's ``flexible-extract`` for GSM8K) reads the last number anywhere in the text; math
verifiers report its verdict beside their own (``VerifyResult.protocols``), so a gain in format and a gain in
reasoning can be told apart.
"""

from __future__ import annotations

import re

from rlreason.types import Problem, VerifyResult
from rlreason.verifiers.base import verifier

_ANCHOR = re.compile(r"####\s*([^\n]*)")
# lm-eval's GSM8K flexible-extract is (-?[$0-9.,]{2,})|(-?[0-9]+), the last match; we also require a digit, so
# a trailing "..." is not an answer.
_NUMBER = re.compile(r"-?[$0-9.,]*[0-9][$0-9.,]*")


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
    answer, reference = extract_hash_answer(completion), str(problem.reference)
    flexible = {"flexible": flexible_verdict(completion, reference)}
    if answer is None:
        return VerifyResult(0.0, {"extracted": None, "reason": "no '####' answer anchor"}, protocols=flexible)
    ok = normalize_number(answer) == normalize_number(reference)
    return VerifyResult(float(ok), {"extracted": answer}, protocols=flexible)


def last_number(completion: str) -> str | None:
    """The last number in the text (commas, ``$`` and a final period removed), or None."""
    found = _NUMBER.findall(completion)
    return normalize_number(found[-1].strip(",.")) if found else None


def flexible_verdict(completion: str, reference: str, same=None) -> bool:
    """The flexible protocol: the last number of the completion equals the reference (numerically; ``same(answer,
    reference)`` for references that are not plain numbers, e.g. math-verify for ``\\frac{1}{2}``)."""
    answer = last_number(completion)
    if answer is None:
        return False
    try:
        return abs(float(answer) - float(normalize_number(reference))) <= 1e-9 * max(1.0, abs(float(answer)))
    except ValueError:
        return bool(same(answer, reference)) if same is not None else answer == normalize_number(reference)
