"""Evaluation: unbiased pass@k against its closed form and brute force, majority voting with equivalent answers
and deterministic ties, and ``rlreason eval`` through the real stack (vLLM workers, the scoring runner)."""

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from rlreason.evaluation.command import output_dir
from rlreason.evaluation.metrics import majority_vote, pass_at_k, problem_metrics, summarize
from rlreason.types import Completion, Problem, ScoredGroup, VerifyResult
from rlreason.verifiers import get_verifier, same_answer_of


@pytest.mark.parametrize("n", [1, 2, 5, 10, 16])
def test_pass_at_k_is_the_closed_form_and_the_subset_average(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            closed = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(closed, abs=1e-12)
            if n <= 10:  # the estimator is the share of k-subsets with at least one correct completion
                flags = [True] * c + [False] * (n - c)
                subsets = list(itertools.combinations(flags, k))
                assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
    assert pass_at_k(100, 3, 1) == pytest.approx(0.03)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def _results(verifier: str, texts: list[str], reference: str) -> list[VerifyResult]:
    problem = Problem("p", "q", reference, verifier)
    return [get_verifier(verifier)(t, problem) for t in texts]


def test_majority_vote_counts_equivalent_math_answers_as_one_vote():
    texts = [r"\boxed{2}", r"\boxed{2}", r"\boxed{\frac{1}{2}}", r"\boxed{0.5}", r"\boxed{1/2}", "no answer"]
    results = _results("math_answer", texts, "1/2")
    winner = majority_vote(results, same_answer_of("math_answer"))
    assert winner is results[2] and winner.correct  # 3 equivalent forms beat two identical 2s
    assert majority_vote(results[:2] + results[5:], same_answer_of("math_answer")).correct is False
    assert not majority_vote(results, None).correct  # without equivalence the literal "2" has the most votes


def test_majority_vote_ties_go_to_the_answer_seen_first_and_silent_completions_do_not_vote():
    results = _results("exact_answer", ["#### 5", "#### 7", "#### 7", "#### 5", "nothing", "nothing"], "5")
    for order in (results, results[1:] + results[:1]):
        assert majority_vote(order, same_answer_of("exact_answer")) is order[0]
    assert majority_vote(results[4:], same_answer_of("exact_answer")) is None
    numbers = _results("exact_answer", ["#### 1,000", "#### 1000.0", "#### 999"], "1000")
    assert majority_vote(numbers[::-1], same_answer_of("exact_answer")) is numbers[1]  # 1,000 and 1000.0 agree


def test_problem_metrics_and_intervals():
    problem = Problem("p", "q", "5", "exact_answer")
    results = _results("exact_answer", ["#### 5", "#### 4", "#### 4", "#### 5"], "5")
    completions = [Completion("p", [1], [2] * n, [0.0] * n, "stop" if n < 4 else "length", 0, "")
                   for n in (1, 2, 3, 4)]
    m = problem_metrics(ScoredGroup(problem, completions, results), [1, 2, 4, 8], same_answer_of("exact_answer"))
    assert m["pass@1"] == 0.5 and m["pass@2"] == pytest.approx(1 - 1 / 6) and m["pass@4"] == 1.0
    assert m["maj@1"] == 1.0 and m["maj@2"] == 1.0 and m["maj@4"] == 1.0 and "pass@8" not in m
    assert m["mean@2"] == 0.5 and m["completion_len"] == 2.5 and m["truncated_frac"] == 0.25
    s = summarize([{"x": 0.0}, {"x": 1.0}, {"x": 1.0}, {"x": 0.0}])["x"]
    assert s["mean"] == 0.5 and s["ci95"] == pytest.approx(1.96 * math.sqrt(1 / 3) / 2) and s["n"] == 4


def _cli(args, cwd):
    proc = subprocess.run([sys.executable, "-m", "rlreason.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)
    return proc


def test_eval_of_a_run_directory_matches_the_runs_own_held_out_accuracy(tmp_path):
    """A one-step run evaluates its final model ("after"); ``rlreason eval RUN`` on the same problems with the
    same settings must agree within sampling error, and write eval.json and problems.jsonl. The same recipe run a
    second time gets its own directory and leaves the first run's files as they were."""
    settings = ["train.steps=1", "eval.before=false", "tasks.eval_size=64", "eval.samples=8",
                "rollout.prompts_per_step=4", "rollout.group_size=2", "output.tensorboard=false", "name=r"]
    proc = _cli(["train", *settings], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Token authentication is enabled" not in proc.stderr + proc.stdout  # (a private instance: no notice)
    assert "starting 1 rollout engine(s) and 1 learner(s)..." in proc.stdout and "ready in" in proc.stdout
    run = tmp_path / "runs" / "r"
    first = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert (run / "final").is_dir() and (run / "summary.json").is_file()
    after = json.loads((run / "summary.json").read_text())["after"]["arithmetic/accuracy"]
    second = _cli(["train", *settings], tmp_path)  # the same recipe again: a directory of its own
    assert second.returncode == 0 and "runs/r-2" in second.stdout, second.stderr[-3000:]
    assert json.loads((tmp_path / "runs" / "r-2" / "summary.json").read_text())["steps"] == 1
    assert {p: (run / p).read_bytes() for p in first} == first  # the first run's files unchanged
    proc = _cli(["eval", "runs/r", "--task", "arithmetic", "--n", "8", "--k", "1,8", "--limit", "64"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "runs" / "r" / "eval"
    report = json.loads((out / "eval.json").read_text())
    t = report["tasks"]["arithmetic"]
    assert t["problems"] == 64 and report["template"] == "plain"
    ours = t["metrics"]["pass@1"]
    assert abs(ours["mean"] - after) < 3 * ours["ci95"] / 1.96 * math.sqrt(2) + 0.01, (ours, after)
    assert t["metrics"]["pass@8"]["mean"] >= ours["mean"] and "maj@8" in t["metrics"]
    rows = [json.loads(line) for line in (out / "problems.jsonl").read_text().splitlines()]
    assert len(rows) == 64 and all(len(r["completions"]) == 8 for r in rows)
    assert sum(c["correct"] for r in rows for c in r["completions"]) / 512 == pytest.approx(ours["mean"])
    assert "| arithmetic | 64 |" in proc.stdout
    assert output_dir(None, str(run)) == run / "eval-2"  # a second evaluation never writes over the first


def test_an_evaluation_never_writes_over_another(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: r\n")
    assert output_dir(None, str(run)) == run / "eval"
    (run / "eval").mkdir()
    (run / "eval-2").mkdir()
    assert output_dir(None, str(run)) == run / "eval-3"
    assert output_dir(None, "tiny") == Path("eval-tiny")
    Path("eval-tiny").mkdir()
    assert output_dir(None, "tiny") == Path("eval-tiny-2") and output_dir("mine", "tiny") == Path("mine")


@pytest.mark.parametrize("args,message", [
    (["nowhere", "--task", "arithmetic"], "error: MODEL: 'nowhere' is not 'tiny'"),
    (["tiny", "--task", "arithmetc"], "error: task: unknown task 'arithmetc'; did you mean 'arithmetic'?"),
    (["tiny", "--task", "arithmetic", "--n", "4", "--k", "1,8"], "error: k: every k must be between 1 and n=4"),
])
def test_eval_refuses_bad_input_in_one_line(args, message, tmp_path):
    proc = _cli(["eval", *args], tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().startswith(message), proc.stderr


@pytest.mark.slow
def test_the_shipped_model_evaluates_on_every_benchmark(tmp_path, data_dir):
    from rlreason.tasks.benchmarks import BENCHMARKS

    names = [b.name for b in BENCHMARKS]
    args = ["eval", "tiny", *[x for name in names for x in ("--task", name)], "--n", "2", "--k", "1,2", "--limit",
            "3", "--set", f"tasks.data_dir={data_dir}", "--set", "rollout.max_tokens=32", "--out", "ev"]
    proc = _cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    for name in names:  # the tiny model's context is short: long benchmark prompts are left out and counted
        t = report["tasks"][name]
        assert t["problems"] + t["too_long"] == 3


def test_an_equivalence_check_that_hangs_does_not_hang_the_vote(monkeypatch):
    import time

    import rlreason.evaluation.metrics as metrics

    monkeypatch.setattr(metrics, "SAME_TIMEOUT_S", 0.2)

    def slow(a, b):
        time.sleep(5)
        return True

    results = _results("exact_answer", ["#### 5", "#### 7", "#### 7"], "5")
    start = time.perf_counter()
    assert majority_vote(results, slow) is results[1]  # no comparison finished: 7 (twice, same text) wins
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("overrides,message", [
    (["rollout.max_tokens=256"], "rollout.max_tokens: 256 leaves no room for a prompt in model.max_model_len 256"),
    (["tasks.eval_size=500"], "tasks.eval_size: 500 is more than task 'arithmetic' holds out (200)"),
])
def test_impossible_evaluation_settings_are_refused(overrides, message):
    from rlreason.recipe import RecipeError, load_config

    with pytest.raises(RecipeError) as err:
        load_config(None, overrides)
    assert str(err.value).startswith(message), str(err.value)
