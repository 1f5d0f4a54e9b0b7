"""Code verifiers: HumanEval-style ``check(candidate)`` tests and MBPP-style assert lists.

The candidate program runs in a :class:`~rlreason.verifiers.sandbox.Sandbox`; the tests run here, on the values
its functions return (plain data), with each of the program's functions replaced by a proxy that calls into the
sandbox. The program never sees the tests and cannot report its own verdict.

``problem.reference`` holds ``format`` ("humaneval" or "mbpp") and the test material:
- humaneval: ``prompt`` (helper code and the signature), ``test`` (defines ``check``), ``entry_point``;
- mbpp: ``tests`` (assert statements), ``test_imports`` (import lines), ``entry_point`` (the tested function).
The candidate's source is the last fenced code block of the completion if there is one (chat models), else for
HumanEval the prompt followed by the completion (a base model continuing the function), for MBPP the completion.
"""

from __future__ import annotations

import builtins
import importlib
import re
import sys

from rlreason.types import Problem, VerifyResult
from rlreason.verifiers.base import verifier
from rlreason.verifiers.sandbox import Sandbox, SandboxError

_SAFE_MODULES = {"sys", "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
                 "operator", "statistics", "fractions", "decimal", "cmath", "random", "datetime", "copy", "array",
                 "typing", "numbers", "struct", "hashlib", "textwrap", "unicodedata", "calendar", "enum"}
_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.DOTALL)
WALL_SECONDS = 10.0


def program_source(completion: str, problem: Problem) -> str:
    """The program to run: the last fenced block (after the reference's ``prelude``, e.g. HumanEval's imports),
    else prompt + completion."""
    blocks = _FENCE.findall(completion)
    if blocks:
        code = blocks[-1]
        prelude = problem.reference.get("prelude", "")
        return f"{prelude}\n{code}" if prelude else code
    if problem.reference["format"] == "humaneval":  # a base model continues the prompt's function
        return problem.prompt + completion
    return completion


def _proxy(box: Sandbox, name: str):
    def call(*args, **kwargs):
        return box.call(name, *args, **kwargs)

    call.__name__ = name
    return call


def reserved_names(namespace: dict) -> frozenset[str]:
    """Names whose trusted meaning a program may never replace: whatever the trusted code bound in ``namespace``
    (helpers of the prompt, test imports, the test's own definitions), every builtin and every standard-library
    module name (not whatever this process happens to have imported: the verdict must not depend on it)."""
    return frozenset(namespace) | frozenset(dir(builtins)) | frozenset(sys.stdlib_module_names)


def _run_trusted(code: str, namespace: dict) -> None:
    """Execute trusted test code with its asserts kept even under ``python -O`` (which would drop them all)."""
    exec(compile(code, "<trusted tests>", "exec", optimize=0), namespace)


def trusted_namespace(reference: dict, box: Sandbox) -> dict:
    """Globals for the tests, built from trusted material only: the prompt's helper code (HumanEval) or the test
    imports (MBPP), real modules the program also imported (MBPP's harness shares one namespace), the test's
    definitions. Then the program's entry point, and any of its functions no trusted name covers, as proxies."""
    namespace: dict = {"__name__": "__rlreason_tests__"}
    entry = reference["entry_point"]
    _run_trusted(reference["prompt"] if reference["format"] == "humaneval" else
                 "\n".join(reference.get("test_imports", [])), namespace)
    for name in box.modules:
        if name in _SAFE_MODULES:
            namespace.setdefault(name, importlib.import_module(name))
    if reference["format"] == "humaneval":
        before = dict(namespace)
        _run_trusted(reference["test"], namespace)  # defines check (and METADATA); runs nothing
        if entry in namespace and (entry not in before or namespace[entry] is not before[entry]):
            raise ValueError(f"the test itself defines the entry point {entry!r}: nothing to check the program by")
        namespace["__rlreason_check__"] = namespace["check"]  # the trusted check, whatever gets bound later
    reserved = reserved_names(namespace)
    for name in box.names:
        if name == entry or name not in reserved:
            namespace[name] = _proxy(box, name)
    return namespace


def run_tests(source: str, reference: dict) -> tuple[int, int, str | None]:
    """(passed, total, first error) of the reference's tests against the program ``source``.

    A test passes only if it completes and the program stayed alive and within its deadline throughout: a test
    that swallowed the program's death (``except Exception``) still fails."""
    tests = reference["tests"] if reference["format"] == "mbpp" else [None]
    passed, error = 0, None
    with Sandbox(source, wall_s=WALL_SECONDS) as box:
        if reference["entry_point"] not in box.names:
            return 0, len(tests), f"program defines no {reference['entry_point']!r}"
        namespace = trusted_namespace(reference, box)
        if reference["format"] == "humaneval":
            tests = [lambda: namespace["__rlreason_check__"](namespace[reference["entry_point"]])]
        for test in tests:
            try:
                test() if callable(test) else _run_trusted(test, namespace)
                if box.failure is not None:
                    raise SandboxError(box.failure)
                passed += 1
            except Exception as e:  # a failed assert, an exception raised in the program, a dead program
                error = error or f"{type(e).__name__}: {str(e)[:200]}"
                if box.failure is not None:
                    break  # the program is gone (timeout, crash): the rest fail too
    return passed, len(tests), error


@verifier("python_tests")
def python_tests(completion: str, problem: Problem) -> VerifyResult:
    """1.0 when every test passes (HumanEval: ``check(candidate)``; MBPP: each assert), else 0."""
    try:
        passed, total, error = run_tests(program_source(completion, problem), problem.reference)
    except SandboxError as e:  # the program failed to load, exited early or timed out: a wrong answer
        return VerifyResult(0.0, {"passed": 0, "failure": str(e)[:300]})
    details = {"passed": passed, "total": total}
    if error:
        details["failure"] = error
    return VerifyResult(float(passed == total), details)
