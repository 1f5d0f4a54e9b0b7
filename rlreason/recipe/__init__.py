"""The recipe: one YAML file per run, validated once and frozen before any process starts.

``sections`` (the pydantic tree), ``loading`` (YAML, overrides, validation), ``checks`` (rules across sections and
the model's files), ``defaults`` (fields left to the model, tasks and machine), ``resources`` (what the recipe asks
of a cluster). The public entry points are re-exported here: ``load_config``, ``RunConfig``, ``RecipeError``.
"""

from rlreason.recipe.loading import (apply_override, find_recipe, load_config, recipes_dir,  # noqa: F401
                                     shipped_recipes, validate)
from rlreason.recipe.sections import EMBEDDED_MODEL, SMOLLM2, RecipeError, RunConfig  # noqa: F401
