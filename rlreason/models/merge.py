"""``rlreason merge ADAPTER --out DIR``: fold a saved LoRA adapter into its base model and write a plain Hugging
Face model directory (for serving without LoRA, or for tools that do not read adapters)."""

from __future__ import annotations

from pathlib import Path


def merge_adapter(adapter_dir: str | Path, out: str | Path, base: str | None = None) -> Path:
    """Load the base (``base``, else the path the adapter recorded), apply the adapter, merge, save with the
    tokenizer. Returns the output directory."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlreason.models.info import adapter_settings

    adapter_dir, out = Path(adapter_dir), Path(out)
    base = base or adapter_settings(adapter_dir)["base_model_name_or_path"]
    if not base or not (Path(base) / "config.json").is_file():
        raise ValueError(f"base model {base!r} of the adapter is not a model directory here; pass --base DIR")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer_source = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else Path(base)
    AutoTokenizer.from_pretrained(str(tokenizer_source)).save_pretrained(out)
    return out
