"""``calculator``: arithmetic the model cannot do in its head, with a calculator it can call (plain text, for the
embedded model; the demonstration that tool use is learned).

A tool call is ``<calc>EXPRESSION</calc>``: the closing tag ends the model's turn and the environment answers with
the value and a newline (``1776\\n``), or ``error\\n`` for an expression it does not accept (only integers, ``+ - *
//`` and parentheses, at most 64 characters; counted as a tool error). The episode ends when the model stops (EOS):
reward 1 when the last ``#### N`` equals the answer. Problems: products of two 2-digit numbers (``37 times 48?``: a
prompt unlike the arithmetic task's, whose worked lines the embedded model must not learn to skip).
"""

from __future__ import annotations

import ast
import operator
import random
import re

from rlreason.envs.base import ENV_REWARD, Environment, StepResult, environment
from rlreason.types import Problem

_CALL = re.compile(r"<calc>(.*?)</calc>\s*$", re.DOTALL)
_ANSWER = re.compile(r"####\s*(-?\d+)")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}


def evaluate(expression: str) -> int:
    """The value of an integer expression (``+ - * //``, parentheses); ValueError for anything else."""
    if len(expression) > 64:
        raise ValueError("expression too long")

    def value(node) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = value(node.left), value(node.right)
            if abs(left) > 10**12 or abs(right) > 10**12:
                raise ValueError("number too large")
            return _OPS[type(node.op)](left, right)
        raise ValueError("not an integer expression")

    try:
        return value(ast.parse(expression.strip(), mode="eval").body)
    except (SyntaxError, ZeroDivisionError) as e:
        raise ValueError(str(e)) from None


@environment("calculator")
class Calculator(Environment):
    """Arithmetic with a calculator tool (<calc>EXPRESSION</calc>); reward 1 for the right #### answer."""

    stop = ("</calc>",)
    max_tokens = 32  # per model turn: a call, or the answer

    def reset(self, problem: Problem) -> str:
        self.answer = int(problem.reference)
        return problem.prompt

    def step(self, action: str) -> StepResult:
        call = _CALL.search(action)
        if call is not None:
            try:
                return StepResult(observation=f"{evaluate(call[1])}\n", tool_calls=1)
            except ValueError:
                return StepResult(observation="error\n", tool_calls=1, tool_errors=1)
        found = _ANSWER.findall(action)
        solved = bool(found) and int(found[-1]) == self.answer
        return StepResult(reward=float(solved), done=True, solved=solved)

    @staticmethod
    def sample(rng: random.Random, tool_share: float = 0.3) -> tuple[Problem, list[tuple[str, bool]]]:
        """A problem, and a worked transcript for pretraining the embedded model, as (text, the model's?) segments:
        in ``tool_share`` of them the calculator is called; in the rest the answer is written directly."""
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        problem = Problem(id=f"calc:{a}*{b}", prompt=f"{a} times {b}?\n", reference=str(a * b), verifier=ENV_REWARD,
                          task="calculator", meta={"env": {"name": "calculator"}})
        if rng.random() < tool_share:
            return problem, [(f"<calc>{a}*{b}</calc>", True), (f"{a * b}\n", False), (f"#### {a * b}", True)]
        return problem, [(f"#### {a * b}", True)]
