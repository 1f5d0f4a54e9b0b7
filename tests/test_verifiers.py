from rlreason.types import Problem
from rlreason.verifiers import get_verifier

ARITH = Problem(id="a", prompt="2+3=?\n", reference="5", verifier="exact_answer")
PROG = Problem(id="p", prompt="f(0)=1 f(1)=3\ndef f(x):\n",
               reference={"entry_point": "f", "tests": [[0, 1], [1, 3], [5, 11]]}, verifier="python_io")


def test_exact_answer_reads_only_the_last_anchor():
    check = get_verifier("exact_answer")
    assert check("2+3=5\n#### 5", ARITH).score == 1.0
    assert check("#### 5\n#### 6", ARITH).score == 0.0
    assert check("5 5 5 5", ARITH).score == 0.0  # no anchor, no reward
    assert check("#### 5.0", ARITH).score == 1.0
    assert check("#### 1,005", Problem("b", "", "1005", "exact_answer")).score == 1.0


def test_python_io_runs_the_function_on_hidden_inputs():
    check = get_verifier("python_io")
    assert check("    return x*2+1", PROG).score == 1.0
    assert check("    return 2*x+1", PROG).score == 1.0  # any equivalent program passes
    wrong = check("    return 1 if x == 0 else 3 if x == 1 else 0", PROG)  # fits the shown examples only
    assert wrong.score == 0.0 and wrong.details["passed"] == 2


def test_python_io_contains_crashes_and_loops():
    check = get_verifier("python_io")
    crash = check("    return 1/0", PROG)
    assert crash.score == 0.0
    syntax = check("    return (", PROG)
    assert syntax.score == 0.0 and "SyntaxError" in syntax.details["failure"]
    loop = check("    while True: pass", PROG)
    assert loop.score == 0.0 and ("timed out" in loop.details["failure"] or "exited" in loop.details["failure"])


def test_python_io_cannot_print_its_way_to_a_pass():
    check = get_verifier("python_io")
    forged = check('    print(\'\\n@@RESULT@@["1", "3", "11"]\'); import sys; sys.exit(0)', PROG)
    assert forged.score == 0.0


def test_format_and_length_rewards():
    from rlreason.verifiers.shaping import answer_format, length_penalty

    p = Problem("f", "", "7", "answer_format")
    assert answer_format("think... <answer>7</answer>", p).score == 1.0
    assert answer_format("<answer>7</answer> more text", p).score == 0.0
    assert answer_format("<answer>7</answer><answer>8</answer>", p).score == 0.0
    assert answer_format("<answer> </answer>", p).score == 0.0
    budget = Problem("l", "", "", "length_penalty", meta={"length_budget": 10})
    assert [length_penalty("x" * n, budget).score for n in (5, 10, 15, 20, 40)] == [0.0, 0.0, -0.5, -1.0, -1.0]


def test_composite_reward_sums_weighted_terms_and_keeps_the_task_verdict():
    from rlreason.recipe import load_config
    from rlreason.scoring import Scorer, score_composite

    cfg = load_config(None, ["tasks.rewards=[{verifier: task, weight: 1.0}, {verifier: answer_format, weight: 0.5},"
                             " {verifier: length_penalty, weight: 2.0}]"])
    p = Problem("c", "", "7", "exact_answer", meta={"length_budget": 20})
    items = [("#### 7", p), ("<answer>7</answer>", p), ("#### 8" + "x" * 24, p)]
    with Scorer(workers=1) as scorer:
        results = score_composite(scorer, items, cfg.tasks.rewards)
    assert [r.score for r in results] == [1.0, 0.5, 2.0 * -0.5]
    assert [r.correct for r in results] == [True, False, False]
    assert results[0].details["components"] == {"task": 1.0, "answer_format": 0.0, "length_penalty": 0.0}
