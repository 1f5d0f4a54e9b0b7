"""MkDocs hooks (``hooks: [docs/hooks.py]`` in mkdocs.yml): reference sections generated from the code at build
time, so they cannot drift from it.

A page asks for one by holding its placeholder on a line of its own:

- ``<!-- recipe-fields -->`` (recipes.md): a table per recipe section, walked from the recipe's pydantic model;
- ``<!-- algorithms -->`` (algorithms.md): a section per registered algorithm with its config fields;
- ``<!-- verifiers -->`` and ``<!-- tasks -->`` (verifiers.md): the registered verifiers and tasks.

Everything project-specific is imported in the small functions right below; the rest is found by walking the
models and registries, so moving a section class or adding a field needs no change here.
"""

from __future__ import annotations

import html
import re
import types
import typing
from functools import lru_cache

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


# -- what the generated pages are made of (the only imports from the project) ------------------------------
def _recipe_models():
    """The recipe's root model, and the model of a ``tasks.data`` entry (also found by walking; named here so a
    change of its annotation cannot drop it from the reference)."""
    from rlreason.recipe import RunConfig
    from rlreason.tasks.files import DataTaskSpec

    return RunConfig, DataTaskSpec


def _algorithms():
    from rlreason.algorithms import ALGORITHMS

    return ALGORITHMS


def _verifiers():
    from rlreason.verifiers import VERIFIERS

    return VERIFIERS


def _tasks():
    from rlreason.tasks import TASKS

    return TASKS


ALGORITHMS_PAGE = "algorithms.md"


# -- Markdown helpers ----------------------------------------------------------------------------------------
def _text(value: str | None) -> str:
    """Prose from a docstring or a field description, safe inside a table cell: one line, reST ``code`` as
    Markdown code, HTML and table pipes escaped (outside code spans too: ``<dir>`` must stay visible)."""
    if not value:
        return ""
    value = " ".join(value.split()).replace("``", "`")
    parts = value.split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = re.sub(r"([*_\[\]])", r"\\\1", html.escape(parts[i], quote=False))
    return "`".join(parts).replace("|", "\\|")


def _code(value: str) -> str:
    return f"`{value}`" if "`" not in value else f"`` {value} ``"


def _first_line(doc: str | None) -> str:
    """The first sentence-line of a docstring (its first paragraph, joined)."""
    if not doc:
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _own_doc(cls: type) -> str:
    """The class's own docstring (not an inherited one)."""
    return cls.__dict__.get("__doc__") or ""


def _anchor(*parts: str) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts if p)


def _yaml(value) -> str:
    """A default as a recipe would write it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, BaseModel):
        return "(section)"
    return str(value)


def _default(info) -> str:
    if info.default_factory is not None:
        try:
            return _code(_yaml(info.default_factory()))
        except TypeError:  # a factory that wants the validated data
            return "(computed)"
    if info.default is PydanticUndefined:
        return "**required**"
    if isinstance(info.default, BaseModel):
        return "(section)"
    return _code(_yaml(info.default))


def _constraints(info) -> str:
    """``>= 1``, ``> 0.0``... from a field's annotated-types metadata."""
    out = []
    for meta in info.metadata:
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                out.append(f"{op} {bound}")
    return ", ".join(out)


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (``X``, ``X | None``, ``tuple[X, ...]``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _is_list(annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (tuple, list, set, frozenset):
        return True
    return origin in (typing.Union, types.UnionType) and any(_is_list(a) for a in typing.get_args(annotation))


def _type(annotation, links: dict[type, tuple[str, str]]) -> str:
    """An annotation in words: ``int``, ``str or null``, ``one of `a`, `b```, ``list of str``..."""
    if annotation is type(None):
        return "null"
    if annotation is typing.Any:
        return "mapping"
    if isinstance(annotation, type) and annotation in links:
        path, anchor = links[annotation]
        return f"[{_code(path)}](#{anchor})"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(_code(_yaml(a)) for a in args)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        words = " or ".join(_type(a, links) for a in rest)
        return words + (" or `null`" if len(rest) < len(args) else "")
    if origin in (tuple, list, set, frozenset):
        items = [a for a in args if a is not Ellipsis]
        return "list of " + (_type(items[0], links) if len(items) == 1 else "values")
    if origin is dict:
        return f"mapping of {_type(args[0], links)} to {_type(args[1], links)}" if args else "mapping"
    if isinstance(annotation, type):
        return _code(annotation.__name__)
    return _code(str(annotation).replace("typing.", ""))


def _field_rows(model: type[BaseModel], links: dict, skip: tuple[str, ...] = (),
                describe: dict[str, str] | None = None) -> list[str]:
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        kind = _type(info.annotation, links)
        bounds = _constraints(info)
        if bounds:
            kind += f" ({_text(bounds)})"
        text = (describe or {}).get(name) or _text(info.description)
        rows.append(f"| {_code(name)} | {kind} | {_default(info)} | {text} |")
    return rows


# -- <!-- recipe-fields --> ----------------------------------------------------------------------------------
def recipe_fields() -> str:
    """Every section of the recipe, walked from the root model: one table per section (and per kind of list
    entry, such as ``tasks.data``), in the order a recipe lists them."""
    root, data_spec = _recipe_models()

    sections: list[tuple[str, type[BaseModel], int, bool]] = []  # (dotted path, model, depth, is a list entry)
    links: dict[type, tuple[str, str]] = {}

    def walk(model: type[BaseModel], path: str, depth: int) -> None:
        for name, info in model.model_fields.items():
            for sub in _models_in(info.annotation):
                if sub in links:
                    continue
                sub_path = f"{path}.{name}" if path else name
                entry = _is_list(info.annotation)
                links[sub] = (sub_path + ("[]" if entry else ""), "recipe-" + _anchor(sub_path))
                sections.append((sub_path, sub, depth, entry))
                walk(sub, sub_path, depth + 1)

    walk(root, "", 0)
    if data_spec not in links:  # the tasks.data entries, wherever the annotation went
        links[data_spec] = ("tasks.data[]", "recipe-tasks-data")
        sections.append(("tasks.data", data_spec, 1, True))

    top = [n for n, i in root.model_fields.items() if not _models_in(i.annotation)]
    free = {n: (f"the algorithm: a mapping with its `name` and that algorithm's own fields, which depend on the "
                f"name: see [Algorithms]({ALGORITHMS_PAGE})")
            for n, i in root.model_fields.items() if i.annotation is typing.Any}
    out = ["### Top level { #recipe-top-level }", "",
           "Fields of the recipe itself, beside its sections.", "",
           *_field_rows(root, links, skip=tuple(n for n in root.model_fields if n not in top), describe=free), ""]
    for path, model, depth, entry in sections:
        level = "#" * min(3 + depth, 6)
        title = f"{_code(path)} entries" if entry else _code(path)
        out += [f"{level} {title} {{ #{links[model][1]} }}", ""]
        intro = _text(_first_line(_own_doc(model)))
        if entry:
            intro = (intro + " " if intro else "") + f"Each entry of the list {_code(path)} has these fields."
        if intro:
            out += [intro, ""]
        out += [*_field_rows(model, links), ""]
    return "\n".join(out)


# -- <!-- algorithms --> ---------------------------------------------------------------------------------------
def _common_config(configs: list[type[BaseModel]]) -> type[BaseModel] | None:
    """The most derived pydantic model every algorithm's config class derives from (the shared fields)."""
    for cls in configs[0].__mro__:
        if (isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel
                and all(issubclass(c, cls) for c in configs)):
            return cls
    return None


def _arxiv_links(paper: str) -> str:
    return re.sub(r"\b(\d{4}\.\d{4,5})\b", r"[\1](https://arxiv.org/abs/\1)", _text(paper))


def _capabilities(spec) -> str:
    """What the loop does for this algorithm, read from the capability flags of its config at the defaults."""
    driver = f"Driver: {_code(getattr(spec, 'driver', 'gradient'))}."
    try:
        cfg = spec.config(name=spec.name)
    except Exception:  # noqa: BLE001 - a config with required fields: no defaults to read flags from
        return driver
    needs = []
    for attr, words in (("needs_value_model", "a learned critic"), ("needs_reference", "a reference model"),
                        ("kl_in_reward", "the KL as a per-token reward penalty"),
                        ("needs_greedy_baseline", "one greedy completion per prompt as the baseline")):
        if getattr(cfg, attr, False) is True:
            needs.append(words)
    members = getattr(cfg, "served_members", 0)
    if isinstance(members, int) and members > 0:
        needs.append(f"{members} perturbed adapters served beside the policy")
    needs = ", ".join(needs[:-1]) + " and " + needs[-1] if len(needs) > 1 else "".join(needs)
    return driver + (" At the defaults it uses " + needs + "." if needs
                     else " At the defaults it needs nothing beside the policy.")


def algorithms() -> str:
    registry = _algorithms()
    specs = [registry.get(name) for name in registry.names()]
    common = _common_config([s.config for s in specs])
    shared = common.model_fields if common is not None else {}
    out = []
    if shared:
        out += ["### Shared fields { #algorithm-shared-fields }", "",
                _text(_first_line(_own_doc(common))) or "Fields every algorithm's config has.", "",
                *_field_rows(common, {}, skip=("name",)), ""]
    for spec in specs:
        out += [f"### {_code(spec.name)} {{ #{_anchor('algorithm', spec.name)} }}", "",
                f"{_sentence(_text(spec.description))}", "", f"Paper: {_arxiv_links(spec.paper)}. "
                f"Config class: {_code(spec.config.__name__)}. {_capabilities(spec)}", ""]
        fields = spec.config.model_fields
        own = [n for n in fields if n != "name" and n not in shared]
        changed = [n for n in fields if n in shared and n != "name"
                   and _default(fields[n]) != _default(shared[n])]
        if own:
            out += [*_field_rows(spec.config, {}, skip=tuple(n for n in fields if n not in own)), ""]
        else:
            out += ["No fields of its own beyond the [shared ones](#algorithm-shared-fields).", ""]
        if changed:
            out += ["Shared fields with another default here: "
                    + ", ".join(f"{_code(n)} = {_default(fields[n])}" for n in changed) + ".", ""]
    return "\n".join(out)


# -- <!-- verifiers -->, <!-- tasks --> -------------------------------------------------------------------------
def verifiers() -> str:
    registry = _verifiers()
    rows = ["| name | what it checks (first line of its docstring) |", "|---|---|"]
    rows += [f"| {_code(n)} | {_text(_first_line(registry.get(n).__doc__))} |" for n in registry.names()]
    return "\n".join(rows) + "\n"


def tasks() -> str:
    registry = _tasks()
    rows = ["| name | description | usual max tokens |", "|---|---|---|"]
    for name in registry.names():
        task = registry.get(name)
        budget = getattr(task, "max_tokens", None)
        rows.append(f"| {_code(name)} | {_text(getattr(task, 'description', ''))} | "
                    f"{'' if budget is None else budget} |")
    return "\n".join(rows) + "\n"


# -- API reference: packages shipped from folders outside rlreason/ ------------------------------------------------
try:
    import griffe
except ImportError:  # mkdocstrings not installed: the hooks above still work
    griffe = None

if griffe is not None:

    class ShippedPackages(griffe.Extension):
        """Griffe extension (``extensions: [docs/hooks.py:ShippedPackages]`` of the mkdocstrings handler).

        ``rlreason.algorithms``, ``rlreason.verifiers``... are shipped from top-level folders
        (``[tool.setuptools.package-dir]`` in pyproject.toml), which griffe's static analysis cannot find under
        ``rlreason/``: each is loaded from its folder and attached to the loaded package under its name."""

        def on_package(self, *, pkg, loader, **kwargs) -> None:  # noqa: ARG002 - griffe's hook signature
            import tomllib
            from pathlib import Path

            root = Path(__file__).resolve().parent.parent
            pyproject = root / "pyproject.toml"
            if not pyproject.is_file():
                return
            mapping = tomllib.loads(pyproject.read_text())["tool"]["setuptools"].get("package-dir", {})
            for dotted, folder in sorted(mapping.items()):
                parent, _, name = dotted.rpartition(".")
                if parent != pkg.path or not (root / folder / "__init__.py").is_file():
                    continue
                module = loader.load(root / folder, try_relative_path=True)  # loaded as a top-level package...
                loader.modules_collection.del_member(module.name)
                pkg.set_member(name, module)  # ... and moved under its real parent


GENERATORS = {"recipe-fields": recipe_fields, "algorithms": algorithms, "verifiers": verifiers, "tasks": tasks}
PLACEHOLDER = re.compile(r"^<!-- (" + "|".join(map(re.escape, GENERATORS)) + r") -->[ \t]*$", re.MULTILINE)


@lru_cache(maxsize=None)
def generated(name: str) -> str:
    return GENERATORS[name]()


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' hook signature
    return PLACEHOLDER.sub(lambda m: generated(m.group(1)), markdown)


def on_pre_build(config) -> None:  # noqa: ARG001 - each build (and rebuild under `mkdocs serve`) regenerates
    generated.cache_clear()
