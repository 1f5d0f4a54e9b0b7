"""The documentation site builds with ``mkdocs build --strict`` (no broken link, every page in the nav, every
mkdocstrings reference found), and its generated reference sections (docs/hooks.py) hold what the code defines."""

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _missing(*modules: str) -> list[str]:
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(module)
    return missing


MISSING = _missing("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"documentation tools not installed ({', '.join(MISSING)}): "
                                                     "pip install -e '.[docs]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return out


def page_text(site: Path, page: str) -> str:
    """A built page's article as plain text (tags dropped, entities decoded)."""
    source = (site / page / "index.html").read_text(encoding="utf-8")
    article = source[source.index("<article"):source.index("</article>")]
    return html.unescape(re.sub(r"<[^>]+>", " ", article))


def test_every_page_builds(site):
    for page in ("getting-started", "recipes", "algorithms", "verifiers", "real-models", "lora-and-continual",
                 "evolution-strategies", "evaluate-and-compare", "scale-out", "reliability", "speed", "layout",
                 "api"):
        assert (site / page / "index.html").is_file(), page
    assert (site / "index.html").is_file()


def test_no_placeholder_left(site):
    for built in site.rglob("*.html"):
        text = built.read_text(encoding="utf-8")
        for name in ("recipe-fields", "algorithms", "verifiers", "tasks"):
            assert f"<!-- {name} -->" not in text, (built, name)


def test_recipe_field_reference(site):
    text = page_text(site, "recipes")
    for word in ("max_model_len", "kv_cache_gib", "model.lora", "tasks.data", "retire_solved_at", "checkpoint_every",
                 "replay_frac", "held_out"):
        assert word in text, word
    # the algorithm section is a free mapping: the reference sends the reader to the algorithms page
    source = (site / "recipes" / "index.html").read_text(encoding="utf-8")
    assert 'href="../algorithms/' in source


def test_algorithm_reference(site):
    text = page_text(site, "algorithms")
    for word in ("dapo", "clip_eps_high", "grpo", "ppo", "gamma", "perturb_rank", "population", "2503.14476"):
        assert word in text, word


def test_verifier_and_task_listings(site):
    text = page_text(site, "verifiers")
    for word in ("math_answer_strict", "python_tests", "length_penalty", "gsm8k", "humaneval", "programs"):
        assert word in text, word


def test_api_reference(site):
    text = page_text(site, "api")
    for word in ("VerifyResult", "Registry", "AlgorithmSpec", "reward_function", "pass_at_k", "Scorer"):
        assert word in text, word


def test_measurement_files_are_published(site):
    """Pages link the measurement files and images beside them; they must land in the site as they are."""
    for name in ("compare_scaling.png", "sync_vs_async.json", "cluster-8gpu.yaml", "compare_es_grpo/report.html"):
        assert (site / name).is_file(), name
