"""Loading a recipe: a YAML file (or a shipped recipe by name), ``section.field=value`` overrides, validation once
(each section, then the rules across sections and the model's files, then the fields left to the model, tasks and
machine), frozen."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from rlreason.recipe.sections import RecipeError, RunConfig
from rlreason.registry import UnknownNameError
from rlreason.section import describe_error


def recipes_dir() -> Path:
    """The shipped recipes (the package ``rlreason.recipes``: ``recipes/`` in a checkout, inside the wheel when
    installed)."""
    from importlib.resources import files

    return Path(str(files("rlreason.recipes")))


def shipped_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def listing() -> list[str]:
    """One line per shipped recipe: its name and the first line of its comment."""
    lines = []
    for name in shipped_recipes():
        first = (recipes_dir() / f"{name}.yaml").read_text().splitlines()[0]
        lines.append(f"{name:14s} {first.lstrip('# ') if first.startswith('#') else ''}")
    return lines


def find_recipe(recipe: str | Path | None) -> Path:
    """A recipe file: the default one for None, a path when it names a file, else a shipped recipe by name
    (``ppo`` or ``ppo.yaml``)."""
    if recipe is None:
        return recipes_dir() / "default.yaml"
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = recipes_dir() / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise RecipeError(f"recipe: no such file {str(recipe)!r} (shipped recipes: {', '.join(shipped_recipes())})")


def load_config(recipe: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML recipe (the default one if None; a file or a shipped recipe's name), apply ``a.b=value``
    overrides, validate, freeze."""
    path = find_recipe(recipe)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe: {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe: {path} must be a mapping of sections")
    for item in overrides:
        apply_override(data, item)
    return validate(data)


def apply_override(data: dict, item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise RecipeError(f"override {item!r}: expected dotted.key=value")
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"{key}: {part!r} is not a section")
    node[leaf] = yaml.safe_load(raw) if raw else ""


def validate(data: dict) -> RunConfig:
    """Validate a recipe mapping; the algorithm section against its own algorithm's config class."""
    from rlreason.algorithms import ALGORITHMS

    algo = data.get("algorithm", {"name": "grpo"})
    if not isinstance(algo, dict) or "name" not in algo:
        raise RecipeError("algorithm: must be a mapping with a 'name' (e.g. {name: grpo})")
    try:
        spec = ALGORITHMS.get(str(algo["name"]))
    except UnknownNameError as e:
        raise RecipeError(f"algorithm.name: {e}") from None
    try:
        algo_cfg = spec.config(**algo)
    except ValidationError as e:
        raise RecipeError(describe_error(e.errors()[0], spec.config, prefix=["algorithm"])) from None
    try:
        cfg = RunConfig(**{**data, "algorithm": algo_cfg})
    except ValidationError as e:
        raise RecipeError(describe_error(e.errors()[0], RunConfig)) from None
    from rlreason.recipe.checks import check_across_sections
    from rlreason.recipe.defaults import resolve_defaults

    cfg = resolve_defaults(cfg)
    check_across_sections(cfg)
    return cfg
