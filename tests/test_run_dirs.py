"""A run never touches another run's files: a second run of the same recipe gets its own directory; only
--resume continues one."""

import yaml

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


def test_a_saved_recipe_runs_again_in_a_new_directory_or_resumes_the_newest(tmp_path, monkeypatch):
    """A recipe saved by a run names that run's directory: run again, it gets one of its own; --resume continues
    the newest run of the name. (Two real runs of one recipe: tests/test_evaluation.py.)"""
    from rlreason.cli import _recipe
    from rlreason.recipe import load_config

    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["name=same"])
    for name in ("same", "same-2"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "recipe.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    again = _recipe(["runs/same/recipe.yaml"], None, resume=False)
    resumed = _recipe(["runs/same/recipe.yaml"], None, resume=True)
    assert again.run_dir.resolve() == (tmp_path / "runs" / "same-3").resolve()
    assert resumed.run_dir.resolve() == (tmp_path / "runs" / "same-2").resolve()  # the newest run of the name
