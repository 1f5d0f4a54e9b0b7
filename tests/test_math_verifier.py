"""The math verifier: strict extraction, math-verify equivalence, and 10,000 hostile completions."""

import random
import time

import pytest

from rlreason.scoring import Scorer
from rlreason.types import Problem
from rlreason.verifiers.math_equiv import boxed_contents, extract_answer, math_answer, math_answer_strict


def _p(gold, **meta):
    return Problem("m", "", gold, "math_answer", meta=meta)


@pytest.mark.parametrize("completion,gold,score", [
    (r"so the answer is \boxed{\frac{1}{2}}.", "0.5", 1.0),
    (r"\boxed{3\sqrt{2}}", r"\sqrt{18}", 1.0),
    (r"\boxed{(1, 2)}", "(1,2)", 1.0),
    (r"\boxed{\{1,2\}}", r"\{2,1\}", 1.0),
    ("The total is 72.\n#### 72", "72", 1.0),
    ("#### 1,000", "1000", 1.0),
    ("<answer>7</answer>", "7", 1.0),
    (r"\boxed{5}", "6", 0.0),
    (r"\boxed{1, 2, 3, 4, 5}", "5", 0.0),  # listing many numbers in the box
    ("1 2 3 4 5", "5", 0.0),  # no anchor: math-verify alone would accept this
    (r"\boxed{3} and \boxed{5}", "5", 1.0),  # the last box is the answer (the standard protocol)
    (r"\boxed{5} and \boxed{3}", "5", 0.0),
    (r"\boxed{5} so \boxed{5}", "5", 1.0),  # the same box twice is one answer
    (r"\boxed{5", "5", 0.0),  # unclosed
    ("#### 5\n#### 6", "5", 0.0),  # the last anchor counts
    (r"\boxed{" + "9" * 2000 + "}", "9", 0.0),  # too long
])
def test_extraction_and_equivalence(completion, gold, score):
    assert math_answer(completion, _p(gold)).score == score


def test_a_completion_that_corrects_itself_is_scored_on_its_last_box():
    text = r"First I thought \boxed{5}. Checking again, 4 + 6 = 10, so the final answer is \boxed{10}."
    assert math_answer(text, _p("10")).score == 1.0
    assert math_answer(text, _p("5")).score == 0.0
    hedged = math_answer_strict(text, _p("10"))  # the strict variant: several different boxes earn nothing
    assert hedged.score == 0.0 and hedged.details["reason"] == "several different boxed answers"
    assert math_answer_strict(r"\boxed{10} so \boxed{10}", _p("10")).score == 1.0


def test_answer_tag_is_configurable_per_problem():
    assert math_answer("<final>7</final>", _p("7", answer_tag="final")).score == 1.0
    assert math_answer("<answer>7</answer>", _p("7", answer_tag="final")).score == 0.0


def test_boxed_contents_handles_nesting_and_is_linear():
    assert boxed_contents(r"\boxed{\frac{1}{2}} x \boxed{a{b}c}") == [r"\frac{1}{2}", "a{b}c"]
    start = time.monotonic()
    assert extract_answer("\\boxed{" * 200_000)[0] is None
    assert time.monotonic() - start < 2.0


def _malformed(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:  # huge
        return rng.choice(["x", "\\boxed{", "{", "}", "####", "1"]) * rng.randrange(10_000, 300_000)
    if kind == 1:  # deeply nested LaTeX
        depth = rng.randrange(10, 400)
        return "\\boxed{" + "\\frac{" * depth + "1" + "}{2}" * depth + "}"
    if kind == 2:  # unicode soup
        return "\\boxed{" + "".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(rng.randrange(1, 300))) + "}"
    if kind == 3:  # binary
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000))).decode("latin-1")
    if kind == 4:  # unbalanced and broken commands
        return "".join(rng.choice(["\\boxed{", "}", "{", "\\frac", "\\sqrt[", "^", "_", "\\left(", "$", "#### "])
                       for _ in range(rng.randrange(1, 500)))
    if kind == 5:  # long numbers and operators inside a box
        return "\\boxed{" + "".join(rng.choice("0123456789+-*/^.,()=") for _ in range(rng.randrange(1, 900))) + "}"
    if kind == 6:  # answer tags
        return "<answer>" + "9^" * rng.randrange(1, 400) + "9</answer>"
    return "#### " + "".join(rng.choice("0123456789e.-") for _ in range(rng.randrange(1, 200)))


@pytest.mark.parametrize("n", [pytest.param(1_000, id="1k"), pytest.param(10_000, id="10k", marks=pytest.mark.slow)])
def test_malformed_completions_never_crash_or_hang(n):
    rng = random.Random(0)
    items = [(_malformed(rng), _p(rng.choice(["5", "\\frac{1}{2}", "\\sqrt{2}", "(1,2)"]))) for _ in range(n)]
    with Scorer(workers=2, timeout_s=5.0) as scorer:
        start = time.monotonic()
        results = scorer.score(items)
        elapsed = time.monotonic() - start
    errors = [r.error for r in results if r.error]
    print(f"\n{n} malformed completions: {elapsed:.1f}s, {len(errors)} errors, "
          f"{sum(r.score for r in results):.0f} scored 1")
    assert len(results) == n and all(r.score in (0.0, 1.0) for r in results)
    assert scorer.timeouts == 0  # no call outlived its timer
    assert not errors, errors[:5]


def test_answers_that_could_hang_sympy_are_refused_but_every_math_gold_answer_is_not(data_dir):
    import json
    from pathlib import Path

    from rlreason.tasks.benchmarks import last_boxed
    from rlreason.verifiers.math_equiv import too_complex

    for bomb in ("9^9^9", "2^{9^{9}}", "10^{123456789}", "1234567!", "{" * 9 + "1" + "}" * 9, "2^{x}" * 17):
        assert too_complex(bomb), bomb
        assert math_answer(f"\\boxed{{{bomb}}}", _p("1")).details["reason"] == too_complex(bomb)
    golds = []
    for split in ("train", "test"):
        for line in open(Path(data_dir) / "math" / f"{split}.jsonl"):
            try:
                golds.append(last_boxed(json.loads(line)["solution"]))
            except ValueError:
                pass
    assert len(golds) > 12_400 and not [g for g in golds if too_complex(g)]
