import subprocess
import sys


def test_import_is_light():
    code = "import sys, rlreason, rlreason.config, rlreason.types; " \
           "print(sorted(m for m in ('torch', 'ray', 'vllm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_algorithms_and_verifiers_are_not_top_level_packages():
    code = "import importlib.util as u; print(u.find_spec('algorithms'), u.find_spec('verifiers'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout
    assert out.strip() == "None None"
