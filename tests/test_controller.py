"""Controller pieces that need no cluster: the problem stream and ScaleRL's prompt retirement."""

import itertools

import pytest

from rlreason.recipe import RecipeError, load_config
from rlreason.controller import Context, problem_stream, retire_solved
from rlreason.types import Problem, ScoredGroup, VerifyResult


def _group(pid, scores):
    return ScoredGroup(Problem(pid, "", "", "exact_answer"), [None] * len(scores), [VerifyResult(s) for s in scores])


def test_solved_prompts_leave_the_pool_and_the_stream_skips_them():
    cfg = load_config(None, ["tasks.retire_solved_at=0.9"])
    ctx = Context(cfg, [], None, None)
    groups = [_group("a", [1.0] * 10), _group("b", [1.0] * 8 + [0.0] * 2), _group("c", [1.0] * 9 + [0.0])]
    assert retire_solved(ctx, groups) == 2 and ctx.retired == {"a", "c"}  # 0.8 stays, 0.9 and 1.0 leave

    first = list(itertools.islice(problem_stream(cfg, set()), 200))
    common = [p.id for p in first]
    retired = set(common[:50])
    again = list(itertools.islice(problem_stream(cfg, retired), 150))
    assert not retired & {p.id for p in again}


def test_retirement_is_off_by_default():
    ctx = Context(load_config(), [], None, None)
    assert retire_solved(ctx, [_group("a", [1.0] * 4)]) == 0 and not ctx.retired


def test_chat_template_and_verifier_override_apply_to_every_problem(tiny_chat_model):
    cfg = load_config(None, ["tasks.template=chat", "tasks.verifier=math_answer", f"model.path={tiny_chat_model}"])
    problem = next(problem_stream(cfg))
    assert problem.verifier == "math_answer"
    assert problem.meta["messages"] == [{"role": "user", "content": problem.prompt}]


def test_chat_template_on_a_model_without_one_is_a_recipe_error():
    with pytest.raises(RecipeError, match=r"^tasks.template: 'chat' needs a model with a chat template"):
        load_config(None, ["tasks.template=chat"])


def test_verify_command_scores_jsonl_and_flags_bad_lines(tmp_path):
    import json
    import subprocess
    import sys

    records = tmp_path / "in.jsonl"
    records.write_text('{"completion": "#### 5", "reference": "5", "id": "ok"}\n'
                       '{"completion": "\\\\boxed{6}", "reference": "5"}\nnot json\n')
    proc = subprocess.run([sys.executable, "-m", "rlreason.cli", "verify", "math_answer", str(records),
                           "--workers", "1"], capture_output=True, text=True, timeout=120)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r.get("score") for r in rows] == [1.0, 0.0, None] and rows[0]["id"] == "ok"
    assert rows[1]["details"]["extracted"] == "6" and rows[2]["error"].startswith("not JSON")
    assert proc.returncode == 2 and "1 input line(s)" in proc.stderr
