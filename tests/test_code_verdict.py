"""The code verdict cannot be forged through names: a program that defines a function named like a builtin, a
module, a helper of the prompt, a test import or a name the test defines never replaces the trusted meaning.
Only the entry point and names nothing trusted defines are bound to the program. Each hostile program below
is wrong; a score above 0 would be a forged verdict. Positive controls show the right program still passes."""

import pytest

from rlreason.types import Problem
from rlreason.verifiers import code

# -- HumanEval format: helper code in the prompt, a test module that defines check(candidate) -----------------
HE_PROMPT = '''import math


def poly(xs: list, x: float):
    """Evaluates the polynomial with coefficients xs at x."""
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


def find_zero(xs: list):
    """A zero of the polynomial xs."""
'''
HE_TEST = '''
METADATA = {{}}


def _expected(xs):
    return -xs[0] / xs[1]


def check(candidate):
    for xs in ([1, 2], [-3, 1], [4, -8]):
        {assertion}
'''
HE_RIGHT = "def find_zero(xs):\n    return -xs[0] / xs[1]\n"
HE_WRONG = "def find_zero(xs):\n    return 0.0\n"

# name: (the test's assertion, the program's shadowing definitions); with old binding each one forged a pass
HUMANEVAL_FORGERIES = {
    "builtin abs": ("assert abs(candidate(xs) - _expected(xs)) < 1e-9", "def abs(x):\n    return 0\n"),
    "builtin round": ("assert round(candidate(xs), 6) == round(_expected(xs), 6)",
                      "def round(x, n=0):\n    return 0\n"),
    "builtin all": ("assert all([candidate(xs) == _expected(xs)])", "def all(x):\n    return True\n"),
    "builtin as a class": ("assert abs(candidate(xs) - _expected(xs)) < 1e-9",
                           "class abs:\n    def __init__(self, x): pass\n    def __lt__(self, o): return True\n"),
    "prompt helper poly": ("assert abs(poly(xs, candidate(xs))) < 1e-6", "def poly(xs, x):\n    return 0.0\n"),
    "test's own helper": ("assert candidate(xs) == _expected(xs)", "def _expected(xs):\n    return 0.0\n"),
    "test's check": ("assert candidate(xs) == _expected(xs)", "def check(candidate):\n    return None\n"),
    "module of the prompt's import": ("assert math.isclose(candidate(xs), _expected(xs))",
                                      "class math:\n    @staticmethod\n    def isclose(a, b):\n        return True\n"),
}


def _humaneval(assertion: str) -> dict:
    return {"format": "humaneval", "prompt": HE_PROMPT, "test": HE_TEST.format(assertion=assertion),
            "entry_point": "find_zero"}


# -- MBPP format: assert statements, import lines, one tested function -----------------------------------------
MBPP_RIGHT = "def similar(a, b):\n    return [x for x in a if x in b]  # uses no builtin the forgeries replace\n"
MBPP_WRONG = "def similar(a, b):\n    return 0\n"
MBPP_FORGERIES = {
    "builtin set": ("assert set(similar((3, 4, 5), (5, 7, 4))) == set((4, 5))", "def set(x=()):\n    return 1\n"),
    "builtin sorted": ("assert sorted(similar((1, 2), (2, 3))) == [2]", "def sorted(x):\n    return [2]\n"),
    "builtin len": ("assert len(similar((1, 2), (1, 2))) == 2", "def len(x):\n    return 2\n"),
    "builtin isinstance": ("assert isinstance(similar((1,), (1,)), list) and similar((1,), (1,)) == [1]",
                           "def isinstance(a, b):\n    return True\ndef list(x=()):\n    return 0\n"),
    "test import math": ("assert math.isclose(similar((2,), (2,))[0], 2.0)",
                         "class math:\n    @staticmethod\n    def isclose(a, b):\n        return True\n"),
}


def _mbpp(assertion: str) -> dict:
    return {"format": "mbpp", "entry_point": "similar", "test_imports": ["import math"], "tests": [assertion]}


# The test uses a module the program is expected to import itself (13 sanitized-MBPP tasks do this with math).
MBPP_MODULE_REF = {"format": "mbpp", "entry_point": "root", "test_imports": [],
                   "tests": ["assert math.isclose(root(16), 4.0)", "assert math.isclose(root(2), 1.4142135623730951)"]}


def _score_result(program: str, reference: dict):
    """The verdict as the scoring runner gives it (a verifier that raises scores 0 with the error recorded)."""
    from rlreason.scoring import Scorer

    with Scorer(workers=1) as scorer:
        return scorer.score([(f"```python\n{program}```", Problem("verdict", "", reference, "python_tests"))])[0]


def _score(program: str, reference: dict) -> float:
    problem = Problem("verdict", "", reference, "python_tests")
    return code.python_tests(f"```python\n{program}```", problem).score


def test_right_programs_pass():
    for assertion, _ in HUMANEVAL_FORGERIES.values():
        assert _score(HE_RIGHT, _humaneval(assertion)) == 1.0
    for assertion, _ in MBPP_FORGERIES.values():
        assert _score(MBPP_RIGHT, _mbpp(assertion)) == 1.0
    assert _score("import math\ndef root(x):\n    return math.sqrt(x)\n", MBPP_MODULE_REF) == 1.0


@pytest.mark.parametrize("name", list(HUMANEVAL_FORGERIES))
def test_humaneval_names_cannot_forge_a_pass(name):
    assertion, forgery = HUMANEVAL_FORGERIES[name]
    assert _score(HE_WRONG + forgery, _humaneval(assertion)) == 0.0, name
    assert _score(HE_RIGHT + forgery, _humaneval(assertion)) == 1.0, f"{name}: the trusted meaning must stay"


@pytest.mark.parametrize("name", list(MBPP_FORGERIES))
def test_mbpp_names_cannot_forge_a_pass(name):
    assertion, forgery = MBPP_FORGERIES[name]
    assert _score(MBPP_WRONG + forgery, _mbpp(assertion)) == 0.0, name
    assert _score(MBPP_RIGHT + forgery, _mbpp(assertion)) == 1.0, f"{name}: the trusted meaning must stay"


def test_a_module_name_the_program_did_not_import_cannot_be_forged():
    fake = "class math:\n    @staticmethod\n    def isclose(a, b):\n        return True\ndef root(x):\n    return 0\n"
    assert _score(fake, MBPP_MODULE_REF) == 0.0


def test_names_nothing_trusted_defines_are_the_programs():
    """A test may call other functions of the program (MBPP tasks sometimes do): those stay bound to it."""
    ref = {"format": "mbpp", "entry_point": "twice", "test_imports": [],
           "tests": ["assert twice(3) == 6", "assert helper_of_the_program(3) == 7"]}
    program = "def twice(x):\n    return 2 * x\ndef helper_of_the_program(x):\n    return x + 4\n"
    assert _score(program, ref) == 1.0


def test_a_test_that_swallows_the_programs_death_still_fails():
    """A test that catches ``Exception`` around the call cannot turn a dead or hung program into a pass."""
    test = "\ndef check(candidate):\n    try:\n        candidate(1)\n    except Exception:\n        pass\n"
    ref = {"format": "humaneval", "prompt": "def f(x):\n    pass\n", "test": test, "entry_point": "f"}
    assert _score("def f(x):\n    return 1\n", ref) == 1.0
    assert _score("import os\ndef f(x):\n    os._exit(0)\n", ref) == 0.0


def test_an_entry_point_named_like_the_tests_check_cannot_replace_it():
    """A HumanEval-format problem whose entry point is called ``check``: the program's ``check`` is tested by the
    trusted one, never called as the checker."""
    prompt = "def check(x):\n    '''Return x + 1.'''\n"
    test = "\ndef check(candidate):\n    assert candidate(1) == 2\n"
    ref = {"format": "humaneval", "prompt": prompt, "test": test, "entry_point": "check"}
    wrong = _score_result("def check(candidate):\n    return None\n", ref)
    assert wrong.score == 0.0
    assert "defines the entry point" in (wrong.error or "") or wrong.details.get("failure")


def test_asserts_survive_python_optimize(tmp_path):
    """Under ``python -O`` (or PYTHONOPTIMIZE) compiled asserts vanish; the trusted tests keep theirs."""
    import json
    import subprocess
    import sys

    records = tmp_path / "in.jsonl"
    reference = {"format": "mbpp", "entry_point": "similar", "test_imports": [],
                 "tests": ["assert similar((1, 2), (2, 3)) == [2]"]}
    records.write_text(json.dumps({"completion": f"```python\n{MBPP_WRONG}```", "reference": reference}) + "\n")
    proc = subprocess.run([sys.executable, "-O", "-m", "rlreason.cli", "verify", "python_tests", str(records),
                           "--workers", "1"], capture_output=True, text=True, timeout=120)
    assert json.loads(proc.stdout.splitlines()[0])["score"] == 0.0, proc.stdout + proc.stderr
