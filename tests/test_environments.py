"""Environments through the command line: a multi-turn recipe trains with LoRA, asynchronous rollouts and two
learners at once; its evaluation writes every episode turn by turn; the built-in environments' rules."""

import json
import random
import subprocess
import sys

import pytest

from rlreason.envs.calculator import Calculator, evaluate
from rlreason.envs.guess import Guess


def test_a_multi_turn_recipe_trains_with_lora_async_and_two_learners_then_evaluates(tmp_path):
    cli = [sys.executable, "-m", "rlreason.cli"]
    train = subprocess.run([*cli, "train", "lora", "tasks.train=[guess]", "tasks.eval=[guess]", "rollout.mode=async",
                            "algorithm.tis_mode=token", "train.learners=2", "train.steps=3",
                            "rollout.prompts_per_step=8", "rollout.group_size=4", "eval.before=false",
                            "tasks.eval_size=8", "eval.samples=2", "output.tensorboard=false", "env.max_turns=4",
                            "name=g"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert train.returncode == 0, train.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "runs" / "g" / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x["kind"] == "train"]
    assert len(steps) == 3 and all(1 <= s["episode_turns"] <= 4 and s["context_tokens"] > 0 for s in steps)
    assert all(abs(sum(v for k, v in s.items() if k.startswith("episode_end/")) - 1) < 1e-9 for s in steps)
    after = json.loads((tmp_path / "runs" / "g" / "summary.json").read_text())["after"]
    assert 0 <= after["guess/accuracy"] <= 1 and after["guess/episode_turns"] >= 1
    evaluated = subprocess.run([*cli, "eval", "runs/g", "--task", "guess", "--n", "2", "--k", "1,2", "--limit", "4",
                                "--out", "ev"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "ev" / "problems.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for completion in (c for r in rows for c in r["completions"]):
        turns = completion["episode"]["turns"]
        assert turns[0]["role"] == "assistant" and all(
            a["role"] != b["role"] for a, b in zip(turns, turns[1:]))  # the model and the environment alternate
        assert completion["episode"]["reason"] in ("done", "max_turns", "max_tokens", "context")
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["tasks"]["guess"]["episodes"]["episode_turns"] >= 1


def test_the_calculator_accepts_integer_expressions_only():
    assert evaluate("37*48") == 1776 and evaluate("(2+3)*-4") == -20 and evaluate("17//5") == 3
    for bad in ("__import__('os')", "2**100", "1/0", "x", "1" * 70, "9*" * 20 + "9"):
        with pytest.raises(ValueError):
            evaluate(bad)
    env = Calculator()
    env.reset(Calculator.sample(random.Random(0))[0])
    answer = env.answer
    called = env.step("<calc>37*48</calc>")
    assert (called.observation, called.tool_calls, called.tool_errors) == ("1776\n", 1, 0)
    assert env.step("<calc>import os</calc>").observation == "error\n"
    assert env.step(f"1776\n#### {answer}").solved and not env.step("#### 1").solved


def test_guess_answers_higher_lower_and_ends_on_the_secret():
    problem, transcript = Guess.sample(random.Random(3))
    env = Guess()
    env.reset(problem)
    secret = int(problem.reference)
    assert env.step(f"{secret - 1}?").observation == " higher\n"
    assert env.step(f"{secret + 1}?").observation == " lower\n"
    assert env.step("hmm?").tool_errors == 1
    found = env.step(f"{secret}?")
    assert found.done and found.reward == 1.0
    # the worked transcript is a binary search that ends on the secret; only the model's guesses are its own
    assert transcript[-1] == (f"{secret}?", True) and all(not own for _, own in transcript[1::2])


def test_python_tool_runs_blocks_in_the_sandbox_and_answers_with_their_output_or_error():
    from rlreason.envs.python_tool import PythonTool
    from rlreason.types import Problem

    env = PythonTool(timeout_s=1.0)
    assert "```python" in env.reset(Problem("p", "What is 16 - 3 - 4?", "9", "math_answer"))
    ran = env.step("Let me compute.\n```python\nprint(16 - 3 - 4)\n```\n")
    assert ran.observation == "```output\n9\n```\n" and (ran.tool_calls, ran.tool_errors) == (1, 0) and not ran.done
    for code, said in [("raise ValueError('no')", "ValueError: no"), ("x = 1", "printed nothing"),
                       ("while True: pass", "timed out")]:
        step = env.step(f"```python\n{code}\n```\n")
        assert said in step.observation and (step.tool_calls, step.tool_errors) == (1, 1), (code, step.observation)
    assert env.step("So the answer is \\boxed{9}.").done  # no block: the final answer, for the verifier
