"""reasoning-gym's datasets as tasks: problems, a fixed held-out set disjoint from the training stream, the
dataset's own scoring (also in a scoring process, from the problem alone), the curriculum, the recipe's names and
entries, the one line without the package, and a short training run through the command line."""

import dataclasses
import itertools
import json
import subprocess
import sys

import pytest
from recipe_runs import train as train_recipe

pytest.importorskip("reasoning_gym")

from rlreason.recipe import RecipeError, load_config  # noqa: E402
from rlreason.registry import UnknownNameError  # noqa: E402
from rlreason.tasks import TASKS, get_task  # noqa: E402
from rlreason.tasks.curriculum import CurriculumSettings, LevelWindow, observe_training  # noqa: E402
from rlreason.tasks.reasoning_gym import INSTRUCTION, ReasoningGymSpec, ReasoningGymTask  # noqa: E402
from rlreason.types import ScoredGroup, VerifyResult  # noqa: E402
from rlreason.verifiers import get_verifier  # noqa: E402
from rlreason.verifiers.reasoning_gym import dataset  # noqa: E402

DATASETS = ("leg_counting", "chain_sum", "gcd")  # each with one right answer (entry["answer"])


def _spec(**fields) -> ReasoningGymSpec:
    return ReasoningGymSpec(**fields)  # (validating it registers the task under its name)


@pytest.mark.parametrize("name", DATASETS)
def test_a_dataset_is_a_task_with_a_fixed_eval_set_and_a_training_stream_from_the_run_seed(name):
    task = get_task(f"reasoning_gym:{name}")
    held = task.eval_problems(20)
    assert len(held) == 20 and len({p.prompt for p in held}) == 20
    again = ReasoningGymTask(task.spec, "other name")
    assert [p.prompt for p in again.eval_problems(20)] == [p.prompt for p in held]  # a fresh object, same set
    train = list(itertools.islice(task.train_problems(seed=0), 20))
    other = list(itertools.islice(task.train_problems(seed=1), 20))
    assert [p.prompt for p in train] != [p.prompt for p in other]
    for p in held + train:
        assert p.prompt.endswith(INSTRUCTION + "\n") and p.verifier == "reasoning_gym" and p.task == task.name
        assert json.loads(json.dumps(p.meta["reasoning_gym"])) == p.meta["reasoning_gym"]
    assert len({p.id for p in held + train + other}) == 60


def test_the_training_stream_never_yields_a_held_out_prompt():
    # one animal, 1-2 of it: a few dozen distinct questions, so the training seeds do meet held-out ones
    task = TASKS.get(_spec(reasoning_gym="leg_counting", name="rg_tiny_legs", held_out=20,
                           config={"min_animals": 1, "max_animals": 1, "min_instances": 1, "max_instances": 2}
                           ).task_name)
    held = task.held_out_prompts()
    assert len(held) == 20
    train = [p.prompt for p in itertools.islice(task.train_problems(seed=0), 400)]
    raw = dataset("leg_counting", task.config, 7, 400)
    assert held & {f"{raw[i]['question'].rstrip()}\n{INSTRUCTION}\n" for i in range(400)}  # (overlap is possible)
    assert not held & set(train)
    big = get_task("reasoning_gym:chain_sum")
    assert not big.held_out_prompts() & {p.prompt for p in itertools.islice(big.train_problems(seed=3), 2000)}


@pytest.mark.parametrize("name", DATASETS)
def test_the_verifier_scores_the_datasets_own_answer_1_and_a_wrong_one_less(name):
    check = get_verifier("reasoning_gym")
    for problem in get_task(f"reasoning_gym:{name}").eval_problems(5):
        right = f"Let me think.\n<answer>{problem.reference}</answer>"
        assert check(right, problem).score == 1.0 and check(right, problem).correct
        assert check("<answer>definitely not it</answer>", problem).score < 1.0
        assert check(str(problem.reference), problem).score == 0.0  # no tags, no answer
        rebuilt = dataclasses.replace(problem, meta={k: v for k, v in problem.meta.items() if k != "entry"})
        assert check(right, rebuilt).score == 1.0  # the entry generated again from name, config, seed, index


def test_a_scoring_process_scores_from_the_problem_alone():
    from rlreason.scoring import Scorer

    problems = get_task("reasoning_gym:gcd").eval_problems(3)
    items = [(f"<answer>{p.reference}</answer>", p) for p in problems] + [("<answer>none</answer>", problems[0])]
    with Scorer(workers=1) as scorer:
        results = scorer.score(items)
    assert [r.score for r in results] == [1.0, 1.0, 1.0, 0.0] and not any(r.error for r in results)


def test_level_window_moves_up_on_recent_accuracy_at_the_current_level_only():
    window = LevelWindow(CurriculumSettings(threshold=0.7, window=4))
    assert not any(window.observe(0, a) for a in (1.0, 0.0, 1.0))
    assert window.observe(0, 1.0)  # 0.75 over the last 4
    assert not window.observe(0, 1.0) and len(window.recent) == 1  # the window starts again
    window.level = 1
    assert not any(window.observe(0, 1.0) for _ in range(10)) and len(window.recent) == 1  # stale groups


def test_a_curriculum_raises_the_datasets_level_when_training_accuracy_passes_the_threshold():
    task = TASKS.get(_spec(reasoning_gym="leg_counting", name="rg_legs_curriculum",
                           curriculum={"threshold": 0.7, "window": 4}).task_name)
    stream = task.train_problems(seed=0)
    first = [next(stream) for _ in range(4)]
    assert {p.meta["reasoning_gym"]["level"] for p in first} == {0}
    assert first[0].meta["reasoning_gym"]["config"]["max_animals"] == 1
    groups = [ScoredGroup(p, [], [VerifyResult(1.0), VerifyResult(float(i < 2))]) for i, p in enumerate(first)]
    observe_training(groups)  # accuracy 0.75 over 4 groups: as a driver reports them
    after = next(stream)
    assert after.meta["reasoning_gym"]["level"] == 1 and after.meta["reasoning_gym"]["config"]["max_animals"] == 2
    observe_training(groups * 3)  # level-0 groups still in flight do not count at level 1
    assert next(stream).meta["reasoning_gym"]["level"] == 1
    assert get_verifier("reasoning_gym")(f"<answer>{after.reference}</answer>", after).score == 1.0
    fresh = task.train_problems(seed=0)  # another run's stream starts at the bottom again
    assert next(fresh).meta["reasoning_gym"]["level"] == 0


def test_recipes_name_datasets_and_an_unknown_one_is_one_line_with_close_matches():
    cfg = load_config(None, ["tasks.train=[reasoning_gym:leg_counting,arithmetic]",
                             "tasks.eval=[reasoning_gym:chain_sum]"])
    assert cfg.tasks.train == ("reasoning_gym:leg_counting", "arithmetic")
    with pytest.raises(RecipeError) as e:
        load_config(None, ["tasks.train=[reasoning_gym:leg_countin]"])
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("tasks.train: unknown reasoning-gym dataset 'leg_countin'; did you mean "
                                   "'leg_counting'")


def test_an_entry_gives_config_name_and_curriculum():
    from rlreason.recipe.sections import TasksConfig
    from rlreason.tasks.files import inline_data_tasks

    entry = {"reasoning_gym": "leg_counting", "name": "legs_easy", "config": {"min_animals": 1, "max_animals": 3},
             "curriculum": {"threshold": 0.8, "window": 8}}
    values = inline_data_tasks({"train": [entry, "arithmetic"], "eval": [{"reasoning_gym": "gcd"}]})
    assert values["train"] == ["legs_easy", "arithmetic"] and values["eval"] == ["rg_gcd"]
    specs = [ReasoningGymSpec(**e) for e in values.pop("reasoning_gym")]
    TasksConfig(**values)  # the names resolve once the entries are validated
    assert get_task("legs_easy").spec == specs[0] and get_task("rg_gcd").config == {}
    for bad, message in [({"config": {"max_animal": 3}}, "has no field 'max_animal'; did you mean 'max_animals'?"),
                         ({"config": {"seed": 3}}, "seed is set by rlreason"),
                         ({"name": "arithmetic"}, "is another task's")]:
        with pytest.raises(ValueError, match=message):
            ReasoningGymSpec(reasoning_gym="leg_counting", **{"name": "rg_bad", **bad})
    if "reasoning_gym" in TasksConfig.model_fields:  # (the recipe's field: tasks.reasoning_gym)
        cfg = load_config(None, [f"tasks.train=[{json.dumps(entry)}]", "tasks.eval=[reasoning_gym:gcd]"])
        assert cfg.tasks.train == ("legs_easy",) and cfg.tasks.reasoning_gym[0].curriculum.window == 8


def test_without_the_package_naming_a_dataset_is_one_line_saying_what_to_install(monkeypatch):
    from rlreason.tasks.reasoning_gym import listing
    from rlreason.verifiers import reasoning_gym as scoring

    monkeypatch.setattr(scoring, "installed", lambda: False)
    with pytest.raises(UnknownNameError) as e:
        TASKS.get("reasoning_gym:lcm")  # (a name no other test resolves: resolved names are kept)
    assert str(e.value) == "reasoning_gym:lcm needs the reasoning-gym package: pip install 'rlreason[envs]'"
    with pytest.raises(RecipeError, match=r"^tasks.eval: reasoning_gym:lcm needs the reasoning-gym package"):
        load_config(None, ["tasks.eval=[reasoning_gym:lcm]"])
    assert list(listing()) == ["reasoning_gym:NAME"]


def test_the_task_listing_names_every_dataset_and_importing_rlreason_does_not_import_the_package():
    from rlreason.tasks.registry import task_listing

    listed = dict(task_listing())
    assert "arithmetic" in listed and "reasoning_gym:leg_counting" in listed
    assert sum(name.startswith("reasoning_gym:") for name in listed) >= 100
    code = ("import sys, rlreason.cli, rlreason.tasks, rlreason.verifiers, rlreason.recipe; "
            "print('reasoning_gym' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_the_driver_reports_every_scored_training_group_also_those_dynamic_sampling_drops(monkeypatch):
    from types import SimpleNamespace

    import rlreason.controller as controller

    task = TASKS.get(_spec(reasoning_gym="chain_sum", name="rg_sums_curriculum",
                           curriculum={"threshold": 0.5, "window": 2}).task_name)
    stream = task.train_problems(seed=0)
    problems = [next(stream) for _ in range(2)]
    done = SimpleNamespace(sampled=3, episode=None)
    monkeypatch.setattr(controller, "generate", lambda ctx, todo, sampling: [(p, [done, done]) for p in todo])
    monkeypatch.setattr(controller, "score", lambda ctx, generated: [
        ScoredGroup(p, group, [VerifyResult(1.0)] * len(group)) for p, group in generated])
    cfg = load_config(None, ["algorithm.filter_zero_variance=true"])
    controller.collect_groups(SimpleNamespace(cfg=cfg, failed_episodes=0), problems, None)  # both groups dropped
    assert next(stream).meta["reasoning_gym"]["level"] == 1


def test_a_recipe_trains_three_reasoning_gym_tasks_and_the_curriculum_raises_a_level(tmp_path):
    # short questions: the embedded model's context is 256 characters
    recipe = (
        "tasks:\n  train: [{reasoning_gym: spell_backward, name: spell, curriculum: {threshold: 0.0, window: 2}},"
        " reasoning_gym:basic_arithmetic, reasoning_gym:lcm]\n  eval: [spell, reasoning_gym:basic_arithmetic, "
        "reasoning_gym:lcm]\n  eval_size: 4\n"
        "rollout: {prompts_per_step: 6, group_size: 2, max_tokens: 32}\ntrain: {steps: 2}\neval: {samples: 1}\n"
        "output: {tensorboard: false}\nname: rg\n")
    steps, after, stderr = train_recipe(tmp_path, recipe, "rg")
    assert "curriculum: spell level 0 -> 1" in stderr
    assert len(steps) == 2 and all(s["verifier_errors"] == 0 and s["completion_len"] > 0 for s in steps)
    for task in ("spell", "reasoning_gym:basic_arithmetic", "reasoning_gym:lcm"):  # each by its dataset's scorer
        assert 0.0 <= after[f"{task}/accuracy"] <= 1.0
