import subprocess
import sys


def test_import_is_light():
    code = "import sys, rlreason, rlreason.recipe, rlreason.types; " \
           "print(sorted(m for m in ('torch', 'ray', 'vllm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_algorithms_and_verifiers_are_not_top_level_packages():
    """Ours are rlreason.algorithms and rlreason.verifiers; a top-level ``verifiers`` is PyPI's, when installed."""
    code = "import importlib.util as u; s = u.find_spec('verifiers'); print(u.find_spec('algorithms'), s and s.origin)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout
    algorithms, verifiers = out.split()
    assert algorithms == "None" and (verifiers == "None" or "site-packages" in verifiers), out


def test_every_subpackage_is_in_the_wheel():
    """pyproject lists the packages by hand: a new subpackage left out of it is missing from the installed wheel
    (rlreason.es was: an installed wheel could not start an engine)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "rlreason").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
