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
    assert syntax.score == 0.0 and syntax.error
    loop = check("    while True: pass", PROG)
    assert loop.score == 0.0 and loop.error


def test_python_io_cannot_print_its_way_to_a_pass():
    check = get_verifier("python_io")
    forged = check('    print(\'\\n@@RESULT@@["1", "3", "11"]\'); import sys; sys.exit(0)', PROG)
    assert forged.score == 0.0
