"""Run a model-written Python function on input/output pairs, in a separate, resource-limited process.

The child only computes ``f(x)`` for the given inputs and returns the values as JSON; the parent compares them
with the expected outputs, so a program cannot declare itself correct. Limits: wall clock, CPU seconds, address
space, file size, no inherited environment. (A hardened sandbox with namespaces arrives with the verifiers issue.)
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile

from rlreason.types import Problem, VerifyResult
from rlreason.verifiers import verifier

WALL_SECONDS = 5.0
CPU_SECONDS = 2
MEMORY_BYTES = 512 * 2**20

# The harness reads (nonce, source, entry point, inputs) from stdin, runs the candidate with stdout silenced and
# every exception (SystemExit too) caught per call, and writes its result with the nonce to a pipe only. A candidate
# that prints, exits early or dies writes no valid result and fails.
_HARNESS = r"""
import io, json, os, sys
_job = json.loads(sys.stdin.read())
_nonce = _job.pop(0)
sys.stdout = sys.stderr = io.StringIO()
out = []
try:
    ns = {}
    exec(compile(_job[0], "<completion>", "exec"), ns)
    fn = ns[_job[1]]
    for x in _job[2]:
        try:
            out.append(repr(fn(x)))
        except BaseException as e:
            out.append("error: " + type(e).__name__)
except BaseException as e:
    out = "error: " + type(e).__name__ + ": " + str(e)[:200]
os.write(int(sys.argv[1]), json.dumps([_nonce, out]).encode()[:1 << 16])
os._exit(0)
"""


def _limit_resources() -> None:  # runs in the child before exec
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def run_function(source: str, entry_point: str, inputs: list) -> list[str]:
    """``repr(f(x))`` for every input, computed in a child process. Raises on crash, timeout or bad result."""
    nonce = secrets.token_hex(16)
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)
    try:
        with tempfile.TemporaryDirectory(prefix="rlreason-run-") as workdir:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HARNESS, str(write_fd)], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir, env={"PYTHONHASHSEED": "0"},
                pass_fds=(write_fd,), preexec_fn=_limit_resources)
            os.close(write_fd)
            write_fd = -1
            try:
                proc.communicate(json.dumps([nonce, source, entry_point, inputs]).encode(), timeout=WALL_SECONDS)
            finally:
                _kill_group(proc)
            raw = os.read(read_fd, 1 << 16)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    try:
        got_nonce, out = json.loads(raw)
    except ValueError:
        raise RuntimeError(f"program wrote no result (exit {proc.returncode})") from None
    if got_nonce != nonce or not isinstance(out, list):
        raise RuntimeError(out if isinstance(out, str) else "program forged or broke its result")
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@verifier("python_io")
def python_io(completion: str, problem: Problem) -> VerifyResult:
    """Score 1.0 when ``f`` returns the expected value on every test input (reference: entry_point, tests)."""
    ref = problem.reference
    header = problem.prompt[problem.prompt.rfind("def "):]
    inputs = [x for x, _ in ref["tests"]]
    try:
        got = run_function(header + completion, ref["entry_point"], inputs)
    except subprocess.TimeoutExpired:
        return VerifyResult(0.0, {"passed": 0}, error=f"timeout after {WALL_SECONDS}s")
    except Exception as e:  # a crashing program is a wrong answer, reported
        return VerifyResult(0.0, {"passed": 0}, error=str(e)[:300])
    passed = sum(g == repr(want) for g, (_, want) in zip(got, ref["tests"]))
    return VerifyResult(float(passed == len(inputs)), {"passed": passed, "total": len(inputs)})
