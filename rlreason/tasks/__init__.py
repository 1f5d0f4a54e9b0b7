"""Tasks turn a source of problems into ``Problem`` records: synthetic generators here, benchmarks in
:mod:`rlreason.tasks.benchmarks`. Both offer ``eval_problems(n, data_dir)`` and ``train_problems(seed, data_dir)``.

A task offers a held-out evaluation set (fixed, the same for every run) and an endless training stream that never
yields a held-out prompt. Tasks are registered by name like algorithms and verifiers.
"""

from __future__ import annotations

from rlreason.tasks import arithmetic, games, programs, reasoning_gym, verifiers_envs
from rlreason.tasks.benchmarks import BENCHMARKS
from rlreason.tasks.registry import TASKS, get_task  # noqa: F401  (the public names)
from rlreason.tasks.synthetic import SyntheticTask

TASKS.register("arithmetic", SyntheticTask(
    "arithmetic", "add/subtract chains of 2-4 numbers, worked line by line, answer after ####",
    arithmetic.sample_problem, also_exclude=("addition", "subtraction")))
TASKS.register("addition", SyntheticTask(
    "addition", "chains of 2-4 additions (a continual-learning family; avoids arithmetic's held-out prompts)",
    arithmetic.sample_addition, also_exclude=("arithmetic",)))
TASKS.register("subtraction", SyntheticTask(
    "subtraction", "chains of 2-4 subtractions, never below 0 (a continual-learning family)",
    arithmetic.sample_subtraction, also_exclude=("arithmetic",)))
TASKS.register("programs", SyntheticTask(
    "programs", "write f(x) from four input/output examples; checked on hidden inputs", programs.sample_problem))


for _benchmark in BENCHMARKS:
    TASKS.register(_benchmark.name, _benchmark)

# reasoning_gym:NAME, for each of reasoning-gym's datasets (the package is imported when one is named)
TASKS.add_family(reasoning_gym.PREFIX, reasoning_gym.resolve, reasoning_gym.listing)
# verifiers:MODULE, for environments of the verifiers package (imported when one is named)
TASKS.add_family(verifiers_envs.PREFIX, verifiers_envs.resolve, verifiers_envs.listing)
# game:ID, for textarena's two-player games (imported when one is named)
TASKS.add_family(games.PREFIX, games.resolve, games.listing)
