"""A run never touches another run's files: a second run of the same recipe gets its own directory; only
--resume continues one."""

import json
import subprocess
import sys

from rlreason.run.rundirs import choose_run_dir


def _run(directory, name):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "recipe.yaml").write_text(f"name: {name}\n")
    return directory


def test_choose_run_dir_numbers_new_runs_claims_them_and_resumes_the_newest(tmp_path):
    runs = tmp_path / "runs"
    base = runs / "x"
    assert choose_run_dir(base, resume=True) == (base, False) and base.is_dir()  # nothing to resume: new, claimed
    _run(base, "x")
    assert choose_run_dir(base, resume=False) == (runs / "x-2", False) and (runs / "x-2").is_dir()
    _run(runs / "x-2", "x")
    _run(runs / "x-10", "x")
    _run(runs / "x-12", "x-12")  # another recipe's run: never ours to number after or resume
    (runs / "x-y").mkdir()
    assert choose_run_dir(base, resume=True) == (runs / "x-10", True)
    assert choose_run_dir(base, resume=False) == (runs / "x-11", False)
    assert choose_run_dir(base, resume=False) == (runs / "x-13", False)  # x-11 is claimed now, x-12 is not ours


def test_running_the_same_recipe_twice_leaves_the_first_runs_files_unchanged(tmp_path):
    args = [sys.executable, "-m", "rlreason.cli", "train", "train.steps=1", "rollout.prompts_per_step=2",
            "rollout.group_size=2", "eval.before=false", "tasks.eval_size=4", "eval.samples=1",
            "output.tensorboard=false", "name=same"]
    first = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Token authentication is enabled" not in first.stderr + first.stdout  # (a private instance: no notice)
    run = tmp_path / "runs" / "same"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert (run / "final").is_dir() and (run / "summary.json").is_file()
    second = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "runs/same-2" in second.stdout
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before
    assert json.loads((tmp_path / "runs" / "same-2" / "summary.json").read_text())["steps"] == 1
    # a recipe saved by the first run names the first run's directory: run again, it gets one of its own
    import os

    from rlreason.cli import _recipe

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        again = _recipe(["runs/same/recipe.yaml"], None, resume=False)
        resumed = _recipe(["runs/same/recipe.yaml"], None, resume=True)
    finally:
        os.chdir(cwd)
    assert again.run_dir.resolve() == (tmp_path / "runs" / "same-3").resolve()
    assert resumed.run_dir.resolve() == (tmp_path / "runs" / "same-2").resolve()  # the newest run of the name
