import subprocess
import sys


def test_import_is_light():
    code = "import sys, rlreason, rlreason.recipe, rlreason.types; " \
           "print(sorted(m for m in ('torch', 'ray', 'vllm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_algorithms_and_verifiers_are_not_top_level_packages():
    code = "import importlib.util as u; print(u.find_spec('algorithms'), u.find_spec('verifiers'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout
    assert out.strip() == "None None"


def test_every_subpackage_is_in_the_wheel():
    """pyproject lists the packages by hand: a new subpackage left out of it is missing from the installed wheel
    (rlreason.es was: an installed wheel could not start an engine)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "rlreason").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
