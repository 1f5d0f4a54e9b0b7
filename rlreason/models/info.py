"""Facts about a Hugging Face model directory read from its small files (configs, safetensors headers), without
loading weights or importing torch: what recipe validation needs before any process starts."""

from __future__ import annotations

import json
import struct
from pathlib import Path

# Linear layers inside the decoder blocks that PEFT can wrap and vLLM can serve LoRA on (Llama/Qwen/Mistral
# naming). Embeddings and the LM head are left out: vLLM serves LoRA on them only with extra switches.
LORA_SERVABLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def has_chat_template(model_dir: Path) -> bool:
    """Whether the directory ships a chat template (in tokenizer_config.json or a file of its own)."""
    if (model_dir / "chat_template.jinja").is_file() or (model_dir / "chat_template.json").is_file():
        return True
    config = model_dir / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


def context_limit(model_dir: Path) -> int | None:
    """The longest context the model's config allows (``max_position_embeddings``), None when it does not say."""
    config = model_dir / "config.json"
    value = json.loads(config.read_text()).get("max_position_embeddings") if config.is_file() else None
    return int(value) if value else None


def hidden_size(model_dir: str | Path) -> int:
    """The width of the model's hidden states (its config's ``hidden_size``)."""
    return int(json.loads((Path(model_dir) / "config.json").read_text())["hidden_size"])


def tensor_names(model_dir: Path) -> list[str]:
    """Names of every tensor in the directory's safetensors files (read from their headers only)."""
    names: list[str] = []
    for file in sorted(model_dir.glob("*.safetensors")):
        with open(file, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        names += [k for k in header if k != "__metadata__"]
    return names


def lora_target_candidates(model_dir: Path) -> list[str]:
    """The module names (last path component) a LoRA adapter may target in this model."""
    present = {name.split(".")[-2] for name in tensor_names(model_dir) if name.endswith(".weight") and
               ".layers." in name}
    return [m for m in LORA_SERVABLE if m in present]


def servable_lora_rank(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds ``rank`` (ValueError above 512)."""
    for allowed in (1, 8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    raise ValueError(f"vLLM serves LoRA ranks up to 512, not {rank}")


def _header(file: Path) -> dict:
    with open(file, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size))


def adapter_misfits(adapter_dir: Path, model_dir: Path) -> list[str]:
    """The adapter's LoRA tensors whose outer dimension is none of the model's layer widths (an adapter trained on
    another model), read from headers only."""
    config = json.loads((model_dir / "config.json").read_text())
    config = config.get("text_config") or config  # (a multimodal model's language part)
    heads, head_dim = config.get("num_attention_heads") or 0, config.get("head_dim")
    head_dim = head_dim or (config.get("hidden_size") or 0) // max(heads, 1)
    widths = {config.get("hidden_size"), config.get("intermediate_size"), config.get("moe_intermediate_size"),
              heads * head_dim, (config.get("num_key_value_heads") or heads) * head_dim}
    out = []
    for name, entry in _header(adapter_dir / "adapter_model.safetensors").items():
        shape = entry.get("shape", []) if name != "__metadata__" else []
        if len(shape) == 2 and ("lora_A" in name or "lora_B" in name):
            outer = shape[1] if "lora_A" in name else shape[0]
            if outer not in widths:
                out.append(f"{name} {shape}")
    return out


def adapter_settings(adapter_dir: Path) -> dict:
    """The saved PEFT adapter's ``adapter_config.json``."""
    return json.loads((adapter_dir / "adapter_config.json").read_text())


def write_adapter(directory: Path, config: dict, tensors: dict) -> None:
    """A PEFT adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``), as PEFT and vLLM read it."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "adapter_model.safetensors"))
