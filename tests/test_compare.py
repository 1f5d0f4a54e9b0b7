"""Comparing algorithms: small-sample statistics against known values, the ScaleRL fit recovering known
parameters (and refusing too few points), and ``rlreason compare`` / ``rlreason report`` through real runs,
resuming without redoing finished runs."""

import json
import random
import subprocess
import sys

import pytest

from rlreason.compare.scaling import bootstrap, fit_curve
from rlreason.compare.stats import mean_ci, t_quantile, t_sf2, welch


def test_student_t_and_welch_match_tabulated_values():
    assert t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(0.975, 2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(0.975, 30) == pytest.approx(2.042, abs=1e-3)
    assert t_sf2(2.0, 5) == pytest.approx(0.1019, abs=1e-4)
    mean, half = mean_ci([0.2, 0.3, 0.4])
    assert mean == pytest.approx(0.3) and half == pytest.approx(4.303 * 0.1 / 3 ** 0.5, abs=1e-3)
    # Welch's test on two samples (R: t.test(c(1,2,3), c(4,5,6.5)) gives p = 0.02915)
    assert welch([1, 2, 3], [4, 5, 6.5]) == pytest.approx(0.02915, abs=1e-4)
    assert welch([0.5, 0.5], [0.5, 0.5]) == 1.0 and welch([1.0], [2.0]) != welch([1.0], [2.0])  # nan


def test_scalerl_fit_recovers_a_known_curve_and_refuses_too_few_points():
    a, b, c_mid, r0 = 0.72, 1.4, 6e4, 0.21
    seeds = []
    for s in range(3):
        rng = random.Random(s)
        seeds.append([(c, r0 + (a - r0) / (1 + (c_mid / c) ** b) + rng.gauss(0, 0.01))
                      for c in (1e4, 2e4, 4e4, 8e4, 1.6e5, 3.2e5, 6.4e5)])
    fit = bootstrap(seeds, r0, rounds=50)
    assert fit["A"] == pytest.approx(a, abs=0.03) and fit["B"] == pytest.approx(b, rel=0.25)
    assert fit["A_spread"]["lo"] <= a + 0.03 and fit["A_spread"]["std"] < 0.05
    assert fit_curve([(1e4, 0.3), (2e4, 0.4), (4e4, 0.5)], r0) is None
    assert bootstrap([[(1e4, 0.3), (2e4, 0.4)], [(1e4, 0.3), (4e4, 0.5)]], r0) is None


def _compare(tmp_path, seeds, algorithms="grpo,rloo"):
    return subprocess.run(
        [sys.executable, "-m", "rlreason.cli", "compare", "--algorithms", algorithms, "--seeds", str(seeds),
         "--steps", "2", "--set", "rollout.prompts_per_step=4", "--set", "rollout.group_size=2", "--set",
         "tasks.eval_size=12", "--set", "eval.samples=2", "--set", "tasks.eval=[arithmetic]", "--set",
         "output.tensorboard=false", "--set", "eval.every=1", "--out", "cmp"], cwd=tmp_path, capture_output=True,
        text=True, timeout=900)


def test_compare_runs_every_combination_resumes_and_reports(tmp_path):
    proc = _compare(tmp_path, 1)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "0 of 2 runs already finished" in proc.stdout
    out = tmp_path / "cmp"
    analysis = json.loads((out / "analysis.json").read_text())
    assert set(analysis["order"]) == {"grpo", "rloo"}
    unfinished = out / "runs" / "grpo-s1"  # a run that died half-way
    unfinished.mkdir()
    (unfinished / "metrics.jsonl").write_text("{}\n")
    first = (out / "runs" / "grpo-s0" / "metrics.jsonl").read_text()
    proc = _compare(tmp_path, 2, "grpo")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 of 2 runs already finished; 1 to run" in proc.stdout
    assert (out / "runs" / "grpo-s1.interrupted-1" / "metrics.jsonl").is_file()
    assert (out / "runs" / "grpo-s0" / "metrics.jsonl").read_text() == first  # not redone
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["order"] == ["grpo"] and len(analysis["algorithms"]["grpo"]["finals"]) == 2
    for png in ("reward_vs_step", "reward_vs_tokens", "reward_vs_time", "heldout_vs_step", "heldout_vs_tokens",
                "heldout_vs_time", "scaling"):
        assert (out / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    env = json.loads((out / "environment.json").read_text())
    assert env["packages"]["torch"] and env["recipe_sha256"]
    assert "| grpo | 2 |" in (out / "report.md").read_text() and "<table>" in (out / "report.html").read_text()
    # the same report for any finished runs (the unfinished one is skipped with a warning)
    proc = subprocess.run([sys.executable, "-m", "rlreason.cli", "report", "cmp/runs/grpo-s0", "cmp/runs/grpo-s1",
                           "cmp/runs/rloo-s0", "cmp/runs/grpo-s1.interrupted-1", "--out", "again"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "| grpo | 2 |" in proc.stdout and "| rloo | 1 |" in proc.stdout, proc.stderr
    assert "skipping cmp/runs/grpo-s1.interrupted-1" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "rlreason.cli", "report", "cmp/runs/grpo-s1.interrupted-1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no finished runs" in proc.stderr


def test_compare_refuses_a_bad_algorithm_before_running_anything(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rlreason.cli", "compare", "--algorithms", "grpo,grop"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "algorithm.name: unknown algorithm 'grop'" in proc.stderr
    assert not (tmp_path / "compare").exists()


def test_an_override_can_name_the_algorithm_it_is_for(tmp_path):
    """``--set es:algorithm.sigma=0.003``: ES's runs get it, GRPO's (which has no sigma) do not; an override for
    an algorithm not compared is refused before anything runs."""
    from rlreason.compare.runner import plan
    from rlreason.recipe import RecipeError, load_config

    sets = ["rollout.group_size=4", "es:algorithm.sigma=0.003", "es:model.lora.rank=4", "tasks.eval=[arithmetic]",
            "es:eval.every=7", "grpo:output.project=a:b", "plugins.custom_algorithm:SPEC:train.lr=3e-6"]
    planned = plan("lora", ["grpo", "es", "plugins.custom_algorithm:SPEC"], 1, 14, sets, tmp_path)
    runs = {p.name.split("-s")[0]: load_config(p.args[0], p.args[1:]) for p in planned}
    es, grpo, plugin = runs["es"], runs["grpo"], runs["plugins.custom_algorithm:SPEC"]
    assert (es.algorithm.sigma, es.model.lora.rank, es.eval.every) == (0.003, 4, 7)  # not compare's every 14 // 5
    assert (grpo.algorithm.name, grpo.model.lora.rank, grpo.eval.every, grpo.output.project) == ("grpo", 8, 2, "a:b")
    assert plugin.train.lr == 3e-6 and grpo.train.lr != 3e-6 and es.output.project != "a:b"
    assert all(c.rollout.group_size == 4 for c in runs.values())
    with pytest.raises(RecipeError, match="'ppo' is not one of --algorithms"):
        plan("lora", ["grpo", "es"], 1, 2, ["ppo:algorithm.vf_coef=0.5"], tmp_path)


def test_a_run_that_logs_rollout_tokens_but_no_completion_length_is_read(tmp_path):
    """An ES run logs rollout_tokens (its generations hold population x prompts x samples completions); reading
    it evaluated completion_len anyway (a dict.get default is computed first) and the report refused the run."""
    import json

    import yaml

    from rlreason.compare.runs import load_run

    run = tmp_path / "es-s0"
    run.mkdir()
    (run / "recipe.yaml").write_text(yaml.safe_dump({"seed": 0, "algorithm": {"name": "es"}, "tasks": {
        "eval": ["arithmetic"]}, "rollout": {"prompts_per_step": 16, "group_size": 2}}))
    rows = [{"kind": "eval", "step": 0, "arithmetic/accuracy": 0.2}]
    rows += [{"kind": "train", "step": s, "reward_mean": 0.2, "rollout_tokens": 1000.0, "step_time_s": 2.0}
             for s in (1, 2)]
    rows += [{"kind": "eval", "step": 2, "arithmetic/accuracy": 0.25}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (run / "summary.json").write_text(json.dumps({"wall_s": 5.0}))
    record = load_run(run)
    assert record.tokens == [1000.0, 2000.0] and record.eval_accuracy == [0.2, 0.25]
