"""The package layout shows the architecture: layers, each importing only from itself and the layers below, and no
import circle between modules (imports inside functions count too). Read from the source, nothing imported."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"rlreason": ROOT / "rlreason", "rlreason.algorithms": ROOT / "algorithms",
           "rlreason.verifiers": ROOT / "verifiers"}

# Lowest first. A module belongs to the first entry that is its name or a package above it.
LAYERS = [
    # records and mechanisms every layer shares
    ["rlreason", "rlreason.types", "rlreason.weights", "rlreason.registry", "rlreason.section",
     "rlreason.process_info"],
    ["rlreason.algorithms", "rlreason.verifiers"],  # pure functions, registered by name
    ["rlreason.tasks", "rlreason.scoring", "rlreason.batching"],  # problems in, scores and batches out
    ["rlreason.envs"],  # environments: multi-turn episodes (and the tasks they play)
    ["rlreason.models"],  # model facts and tools: the embedded model, GGUF, merging, token counts
    ["rlreason.recipe"],  # the recipe: sections, loading, cross-section checks, resolved defaults
    ["rlreason.rollout", "rlreason.learner"],  # the engines and the learner (Ray actors)
    ["rlreason.report", "rlreason.run"],  # what a person sees; run infrastructure (Ray, checkpoints, signals)
    ["rlreason.controller", "rlreason.episode_groups"],  # the stages every driver calls: generate, score, learn,
    # push; what happens to a step's episodes between scoring and learning
    ["rlreason.evaluation", "rlreason.integrations"],  # held-out evaluation and rlreason eval; TRL
    ["rlreason.drivers", "rlreason.api"],  # one small driver per mode over the stages; the primitive API
    ["rlreason.compare"],  # many runs and their report
    ["rlreason.cli", "rlreason.verify_cli"],  # commands
]


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            if package == "rlreason" and parts and parts[0] in ("algorithms", "verifiers"):
                continue
            found[".".join([package, *parts])] = path
    return found


def _known(name: str, mods: dict) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(mods: dict) -> dict[str, set[str]]:
    edges = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if target.startswith("rlreason"):
                    known = _known(target, mods)
                    if known and known != module:
                        edges[module].add(known)
    return edges


def layer_of(module: str) -> int:
    best = None
    for i, layer in enumerate(LAYERS):
        for name in layer:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (i, name)
    assert best is not None, f"{module} is in no layer: add it to LAYERS in tests/test_layout.py"
    return best[0]


def test_every_module_has_a_layer_and_no_import_climbs_back_up():
    mods = modules()
    climbs = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
              for m, targets in imports(mods).items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert not climbs, "\n".join(climbs)


def test_no_import_circle():
    edges = imports(modules())
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_a_package_of_the_layout_imports_nothing_heavy_on_import():
    """``import rlreason`` and the recipe stay light: no torch, ray or vllm (the recipe validates before any
    process starts)."""
    import subprocess
    import sys

    code = ("import sys, rlreason, rlreason.recipe, rlreason.types; "
            "print(sorted(m for m in ('torch', 'ray', 'vllm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
