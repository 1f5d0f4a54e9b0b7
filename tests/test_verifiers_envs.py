"""Environments of the PyPI ``verifiers`` package (v1 API): the package imports beside ``rlreason.verifiers`` from
any directory, the repository's root included; an environment written with its own API (tests/vf_toy.py) is played
through the engine's endpoint, scored by its rubric and recorded token for token; a recipe trains on it."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("verifiers.v1", reason="the verifiers package (rlreason[envs], Python 3.11+)")

from recipe_runs import train  # noqa: E402
from rlreason.rollout.engine import SamplingSpec  # noqa: E402
from rlreason.rollout.episodes import EpisodeSpec  # noqa: E402
from rlreason.tasks import get_task  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("where", [ROOT, Path("/")])
def test_the_verifiers_package_imports_beside_rlreason_verifiers_from_any_directory(where):
    code = ("import verifiers, verifiers.v1, rlreason.verifiers as ours; "
            "print(verifiers.__file__); print(ours.__file__); print('math_answer' in ours.VERIFIERS.names())")
    out = subprocess.run([sys.executable, "-c", code], cwd=where, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    theirs, ours, registered = out.stdout.split()
    assert "site-packages" in theirs and Path(ours) == ROOT / "verifiers" / "__init__.py" and registered == "True"


def test_a_verifiers_environment_is_played_through_the_endpoint_and_scored_by_its_rubric(engine):
    problems = get_task("verifiers:vf_toy").eval_problems(3)
    groups = engine.generate(problems, SamplingSpec(2, 12, episode=EpisodeSpec(timeout_s=60)))
    for group in groups:
        for c in group:
            assert c.episode.reason == "done" and c.episode.scored
            assert c.episode.reward == float(any(ch.isdigit() for ch in c.text))  # the rubric's, on what was sampled
            assert c.text == engine.tokenizer.decode(c.completion_ids, skip_special_tokens=True)
            again = engine.sequence_logprobs(c.prompt_ids, c.completion_ids)
            assert max(abs(a - b) for a, b in zip(again, c.logprobs)) < 1e-3


def test_an_unknown_module_is_one_line():
    from rlreason.recipe import load_config

    with pytest.raises(Exception, match="verifiers:no_such_env: ModuleNotFoundError"):
        load_config(None, ["tasks.train=[verifiers:no_such_env]"])


def test_a_recipe_trains_on_a_verifiers_environment(tmp_path):
    steps, after, _ = train(tmp_path, "tasks:\n  train: [{verifiers: vf_toy}]\n  eval: [verifiers:vf_toy]\n"
                            "  eval_size: 4\nrollout: {prompts_per_step: 4, group_size: 4, max_tokens: 12}\n"
                            "train: {steps: 2}\neval: {before: false}\noutput: {tensorboard: false}\nname: v\n", "v")
    assert len(steps) == 2 and all(s["logprob_mismatch"] < 1e-3 and s["episode_turns"] == 1 for s in steps)
    assert 0.0 <= after["verifiers:vf_toy/accuracy"] <= 1.0
