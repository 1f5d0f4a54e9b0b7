"""The race's workloads: a model, a request shape and a training length, the same for every contestant."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

CACHE = Path.home() / ".cache" / "rlreason" / "race"


@dataclass(frozen=True)
class Workload:
    name: str
    prompts: int  # per step
    group: int  # completions per prompt
    max_tokens: int
    steps: int
    quick_steps: int
    lr: float
    ignore_eos: bool  # every completion runs to max_tokens
    eval_size: int  # held-out arithmetic problems scored after training
    about: str

    def model_dir(self) -> str:
        return BUILDERS[self.name]()


def tiny_model() -> str:
    from rlreason.models.tiny import default_model_path

    return default_model_path()


def llama_107m() -> str:
    """A 107M-parameter Llama of SmolLM2-135M's shape (30 layers, hidden 576, 9 heads / 3 KV heads, MLP 1536),
    randomly initialised (seed 0), with the embedded model's 65-token tokenizer; fp32. Built once, cached."""
    out = CACHE / "llama-107m"
    if (out / "model.safetensors").is_file():
        return str(out)
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=512,
                         tie_word_embeddings=True, rms_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return str(out)


BUILDERS = {"tiny": tiny_model, "107m": llama_107m}

WORKLOADS = {
    "tiny": Workload("tiny", prompts=32, group=8, max_tokens=48, steps=20, quick_steps=8, lr=1e-4,
                     ignore_eos=False, eval_size=200,
                     about="the default recipe: embedded 0.8M Llama, arithmetic, 32 prompts x 8 x <=48 tokens"),
    "107m": Workload("107m", prompts=4, group=8, max_tokens=64, steps=6, quick_steps=4, lr=1e-5,
                     ignore_eos=True, eval_size=16,
                     about="107M Llama of SmolLM2-135M's shape (random init), 4 prompts x 8 x 64 tokens, full length"),
}
