"""Name -> object registries that survive process boundaries.

Registration happens at import time (``@REGISTRY.register("name")``); third-party packages register through an
entry-point group, and a recipe may name ``module.path:attribute`` directly. Every process that resolves names
(driver, Ray actors, scoring workers) calls :func:`load_plugins` first, so only names ever cross Ray.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

# Entry-point groups for plugins, each also the name of the built-in module that registers at import.
_ENTRY_POINT_GROUPS = ("rlreason.algorithms", "rlreason.verifiers", "rlreason.tasks", "rlreason.envs")
# What a scoring process needs (tasks may register verifiers): no algorithms, so no torch (2 s a process).
SCORING_GROUPS = ("rlreason.verifiers", "rlreason.tasks")
_GROUPS_OF_KIND = {"algorithm": ("rlreason.algorithms",), "verifier": SCORING_GROUPS, "task": SCORING_GROUPS,
                   "environment": ("rlreason.envs",)}


class UnknownNameError(KeyError):
    """Raised for a name no registry entry has; the message lists what is allowed and a did-you-mean."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of ``T``. ``get`` also accepts ``module:attr`` and imports it (which registers it)."""

    def __init__(self, kind: str, schemes: dict[str, Callable[[object], T]] | None = None) -> None:
        """``schemes``: prefixes that adapt an imported object, e.g. ``trl:module:function`` -> ``schemes["trl"]``
        applied to ``module:function``."""
        self.kind, self.schemes = kind, schemes or {}
        self._groups = _GROUPS_OF_KIND.get(kind, _ENTRY_POINT_GROUPS)  # the plugin groups its names come from
        self._items: dict[str, T] = {}
        self._imported: dict[str, T] = {}  # module:attr references resolved so far (not listed in names())
        # prefix -> (resolve(NAME), listing()): names ``prefix:NAME`` of a family (reasoning_gym:leg_counting)
        self._families: dict[str, tuple[Callable[[str], T], Callable[[], dict[str, str]]]] = {}

    def register(self, name: str, item: T | None = None,
                 replace: Callable[[T], bool] | None = None) -> Callable[[T], T] | T:
        """Register ``item`` under ``name``; used bare as a decorator when ``item`` is omitted. An item already
        registered under ``name`` is an error unless ``replace(old)`` says it may be replaced."""

        def add(obj: T) -> T:
            old = self._items.get(name)
            if old is not None and old is not obj and not (replace is not None and replace(old)):
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add if item is None else add(item)

    def add_family(self, prefix: str, resolve: Callable[[str], T], listing: Callable[[], dict[str, str]]) -> None:
        """Names ``prefix:NAME`` resolve to ``resolve(NAME)`` (once per process; it raises UnknownNameError for a
        NAME it does not know); ``listing()``: {full name: description} of the names it offers."""
        self._families[prefix] = (resolve, listing)

    def names(self) -> list[str]:
        load_plugins(self._groups)
        return sorted(self._items)

    def family_names(self) -> dict[str, str]:
        """{name: description} of the names the families offer (not in ``names()``: they resolve on demand)."""
        load_plugins(self._groups)
        return {name: text for _, listing in self._families.values() for name, text in listing().items()}

    def get(self, name: str) -> T:
        load_plugins(self._groups)
        if name in self._items:
            return self._items[name]
        if name in self._imported:
            return self._imported[name]
        scheme, _, rest = name.partition(":")
        if scheme in self._families:
            self._imported[name] = self._families[scheme][0](rest)
            return self._imported[name]
        if scheme in self.schemes and ":" in rest:
            self._imported[name] = self.schemes[scheme](self._import(rest))
            return self._imported[name]
        if ":" in name:
            return self._import(name)
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        allowed = sorted(self._items)
        close = difflib.get_close_matches(name, allowed, n=1)
        allowed += [f"{prefix}:NAME" for prefix in self._families]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (allowed: {', '.join(allowed)}, or module:name)"

    def _import(self, ref: str) -> T:
        module_name, _, attr = ref.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise UnknownNameError(f"cannot import {self.kind} module {module_name!r}: {e}") from None
        obj = self._items.get(attr, getattr(module, attr, None))
        if obj is None:
            raise UnknownNameError(f"module {module_name!r} has no {self.kind} {attr!r}")
        self._imported[ref] = obj
        return obj


def importable_here() -> None:
    """The user's own modules (``my_envs:Countdown``, ``my_verifiers:check``) import from the working directory, as
    with ``python -m``: in this process and in the actors of a Ray instance the run starts (they inherit
    PYTHONPATH). A cluster joined elsewhere needs the module installed on its nodes."""
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if here not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([here, *filter(None, paths)])


_loaded: set[str] = set()


def load_plugins(groups: tuple[str, ...] = _ENTRY_POINT_GROUPS) -> None:
    """Import the built-in registrations and installed plugin entry points of ``groups`` (default: all; idempotent,
    cheap after once)."""
    for group in groups:
        if group in _loaded:
            continue
        _loaded.add(group)
        importlib.import_module(group)
        for ep in entry_points(group=group):
            ep.load()


def hand_over(name: str, path: str) -> None:
    """A folder of this repository imported under a top-level name it shares with an installed package (our
    ``verifiers/`` is ``rlreason.verifiers``; PyPI's ``verifiers`` is another project) hands the name over: the
    installed package is loaded in its place. Running from the repository's root (``python -m pytest``, or a CLI
    that puts the working directory on sys.path) then cannot shadow it."""
    import importlib.machinery
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    elsewhere = [p for p in sys.path if os.path.abspath(p or ".") != root]
    spec = importlib.machinery.PathFinder.find_spec(name, elsewhere)
    if spec is None:
        del sys.modules[name]
        raise ModuleNotFoundError(f"No module named {name!r} is installed (this repository's {name}/ folder is "
                                  f"rlreason.{name})", name=name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (the import statement returns what sys.modules holds once the folder has run)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
