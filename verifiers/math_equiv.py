"""Math answer equivalence: we extract the final answer, ``math-verify`` judges it against the gold answer.

Extraction is ours and strict (math-verify alone is lenient: without a box it finds "5" in "1 2 3 4 5"):
1. the last ``\\boxed{...}`` (or ``\\fbox{}``): the standard protocol of published benchmark numbers, so a
   completion that corrects itself is scored on its final box. ``math_answer_strict`` instead gives nothing to
   several boxes with different contents (a guard against hedging when training on the reward);
2. else the text after the last ``####`` (GSM8K style);
3. else the last ``<answer>...</answer>`` (the tag is ``problem.meta["answer_tag"]``, default ``answer``).
No anchor, no reward. Only the extracted text is handed to math-verify, so a list of numbers inside the box is a
list, not a lucky hit. math-verify's own ``signal.alarm`` timeouts are off (they work only in a main thread);
the scoring runner bounds every call with its own timer in the worker process.
"""

from __future__ import annotations

import logging
import re

from rlreason.types import Problem, VerifyResult
from rlreason.verifiers.base import verifier
from rlreason.verifiers.answers import extract_hash_answer, flexible_verdict

MAX_ANSWER_CHARS = 1000
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"[{}]")


def boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` with balanced braces, in order (unclosed boxes are skipped).

    One pass over the braces (a stack), so a megabyte of ``\\boxed{`` costs linear time, not quadratic."""
    opens = [m.end() - 1 for m in _BOX.finditer(text)]
    if not opens:
        return []
    closing, stack = {}, []
    for m in _BRACE.finditer(text, opens[0]):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            closing[stack.pop()] = m.start()
    return [text[i + 1: closing[i]] for i in opens if i in closing]


def extract_answer(text: str, tag: str = "answer", unique_box: bool = False) -> tuple[str | None, str]:
    """(answer, how) or (None, why not). ``unique_box``: several different boxed answers are no answer."""
    boxes = boxed_contents(text)
    if boxes:
        if unique_box and len({b.strip() for b in boxes}) > 1:
            return None, "several different boxed answers"
        return boxes[-1].strip(), "boxed"
    hashed = extract_hash_answer(text)
    if hashed is not None:
        return hashed.replace(",", ""), "####"
    tags = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", text, re.DOTALL)
    if tags:
        return tags[-1].strip(), "tag"
    return None, "no answer anchor (\\boxed{}, ####, or an answer tag)"


# Limits on an extracted answer before any parsing; every gold answer of MATH (12,998) sits far inside them
# (at most 7 carets, brace depth 2, 9 fractions). Beyond them sympy can spend minutes, or hang in C code that
# no timer interrupts (9^9^9, 10^{10^9}, 100000!).
_TOWER = re.compile(r"\^\s*(?:\{[^{}]*\}|[\w.]+)\s*\^|\^\s*\{[^{}]*\^")
_BIG_EXPONENT = re.compile(r"\^\s*\{?\s*\d{5,}|\d{6,}\s*!")


def too_complex(answer: str) -> str | None:
    """Why ``answer`` is refused before parsing, or None."""
    depth = deepest = 0
    for ch in answer:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        deepest = max(deepest, depth)
    if deepest > 8:
        return "braces nested too deeply"
    if answer.count("^") > 16 or answer.count("\\frac") > 24:
        return "too many powers or fractions"
    if _TOWER.search(answer) or _BIG_EXPONENT.search(answer):
        return "power tower or huge exponent/factorial"
    return None


def equivalent(answer: str, gold: str) -> bool:
    """math-verify's judgement, with its own signal timeouts off: they work only in a main thread and would
    cancel the scoring runner's per-call timer, which bounds this call instead."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout disabled" notice: we bound the call
    gold_parsed = parse(f"${gold}$", parsing_timeout=None)
    answer_parsed = parse(f"${answer}$", parsing_timeout=None)
    if not gold_parsed or not answer_parsed:
        return False
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=None))


def judge(completion: str, problem: Problem, unique_box: bool) -> VerifyResult:
    """The strict verdict (an anchored answer) as the score, the flexible one (the last number) beside it."""
    gold = str(problem.reference)
    flexible = {"flexible": flexible_verdict(completion, gold, _bounded_equivalent)}
    answer, how = extract_answer(completion, problem.meta.get("answer_tag", "answer"), unique_box)
    if answer is None:
        return VerifyResult(0.0, {"extracted": None, "reason": how}, protocols=flexible)
    refused = "answer empty or too long" if len(answer) > MAX_ANSWER_CHARS or not answer else too_complex(answer)
    if refused:
        return VerifyResult(0.0, {"extracted": answer[:80], "reason": refused}, protocols=flexible)
    return VerifyResult(float(equivalent(answer, gold)), {"extracted": answer, "anchor": how}, protocols=flexible)


def _bounded_equivalent(answer: str, gold: str) -> bool:
    """math-verify on a number the flexible protocol read (never a tower or a huge factorial: it is digits)."""
    return len(answer) <= MAX_ANSWER_CHARS and too_complex(answer) is None and equivalent(answer, gold)


@verifier("math_answer", same_answer=equivalent)
def math_answer(completion: str, problem: Problem) -> VerifyResult:
    """1.0 when the final answer (the last box) is mathematically equivalent to ``problem.reference``."""
    return judge(completion, problem, unique_box=False)


@verifier("math_answer_strict", same_answer=equivalent)
def math_answer_strict(completion: str, problem: Problem) -> VerifyResult:
    """As math_answer, but several different boxed answers score 0 (for training against hedging)."""
    return judge(completion, problem, unique_box=True)
