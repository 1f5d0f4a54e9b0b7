"""Shared fixtures. vLLM costs ~12 s to import and seconds to start: one engine per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
# Test plugins (a custom verifier, a custom algorithm) are importable as ``plugins.<module>`` here and in the
# subprocesses and Ray actors the tests start.
sys.path.insert(0, str(TESTS_DIR))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# model.dtype auto resolves to float32 in every test, whatever the CPU (machines of this kind differ: with native
# bf16 it would be bfloat16); tests of bfloat16 ask for it, tests of the detection set this themselves.
os.environ["RLREASON_CPU_BF16"] = "0"


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    from rlreason.models.tiny import default_model_path

    return default_model_path()




@pytest.fixture(scope="session")
def data_dir() -> str:
    """The benchmark data the tests read (the project itself never assumes this path)."""
    path = Path(os.environ.get("RLREASON_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    if not path.is_dir():
        pytest.skip(f"benchmark data not found at {path} (set RLREASON_TEST_DATA)")
    return str(path)


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:\n{% endif %}")


@pytest.fixture(scope="session")
def tiny_chat_model(tiny_model_path, tmp_path_factory) -> str:
    """The embedded model with a chat template added (its characters are all in the tiny vocabulary)."""
    import json
    import shutil

    out = tmp_path_factory.mktemp("tiny-chat") / "model"
    shutil.copytree(tiny_model_path, out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHAT_TEMPLATE}))
    return str(out)


@pytest.fixture(scope="session")
def engine(tiny_chat_model):
    """An in-process vLLM engine serving the embedded model (with a chat template added; same weights)."""
    from rlreason.rollout.engine import RolloutEngine

    return RolloutEngine(tiny_chat_model, seed=0)
