"""``python_tool``: tool-integrated math reasoning. The model may write a Python block; the environment runs it in
the code sandbox (never in the engine's process) and answers with its printed output; the episode ends when the
model answers without a block, and the data task's verifier judges its final answer (``\\boxed{}``).

Format (a model turn that ends with a closing fence is a call)::

    ```python
    print(16 - 3 - 4)
    ```

answered ``\\n```output\\n9\\n```\\n`` (a program that fails: its error's last line; one that prints nothing: a
note saying so; a timeout: ``timed out``; each counted as a tool error). Meant for real models in their chat
template (``tasks.train: [{env: python_tool, data: gsm8k}]``); its instruction is added to the problem's prompt.
"""

from __future__ import annotations

import re

from rlreason.envs.base import Environment, StepResult, environment
from rlreason.types import Problem

_BLOCK = re.compile(r"```python\s*\n(.*?)```\s*$", re.DOTALL)
INSTRUCTION = ("You may run Python to help: write a ```python block that prints what you need and stop; its output "
               "comes back. Finish with the final answer in \\boxed{}.")
RUNNER = '''
import contextlib, io

def __run__(code):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"__name__": "__main__"})
    return out.getvalue()
'''


def run_python(code: str, timeout_s: float = 10.0, max_chars: int = 1000) -> tuple[str, bool]:
    """(what the program printed, or why it failed; whether it ran without error), in the code sandbox."""
    from rlreason.verifiers.sandbox import CandidateRaised, Sandbox, SandboxError

    try:
        with Sandbox(RUNNER, wall_s=timeout_s, cpu_s=max(1, int(timeout_s))) as box:
            printed = str(box.call("__run__", code))
    except CandidateRaised as e:
        return (str(e).strip().splitlines() or ["error"])[-1][:max_chars], False
    except SandboxError as e:
        return (str(e).splitlines() or ["error"])[0][:max_chars], False  # ("timed out", "program exited", ...)
    if not printed.strip():
        return "(the program printed nothing: print what you need)", False
    return printed[:max_chars], True


@environment("python_tool")
class PythonTool(Environment):
    """Math with a Python tool run in the sandbox (```python blocks); the data task's verifier judges the answer."""

    stop = ("```\n",)
    rewards = False  # the data task's verifier judges the final answer

    def __init__(self, timeout_s: float = 10.0, max_output_chars: int = 1000) -> None:
        self.timeout_s, self.max_output_chars = timeout_s, max_output_chars

    def reset(self, problem: Problem) -> str:
        return f"{problem.prompt.rstrip()}\n{INSTRUCTION}"

    def step(self, action: str) -> StepResult:
        block = _BLOCK.search(action)
        if block is None:
            return StepResult(done=True)  # a final answer: the verifier judges it
        output, ok = run_python(block[1], self.timeout_s, self.max_output_chars)
        return StepResult(observation=f"```output\n{output.rstrip()}\n```\n", tool_calls=1, tool_errors=int(not ok))
