"""The driver's tokenizer: counts prompt tokens exactly as the engines' Hugging Face tokenizer encodes them, without
importing transformers when it can (3-5 s of a 2-core machine's start-up, spent while the engines start).

A tokenizer whose class is the plain ``tokenizers`` backend encodes in the Rust ``tokenizers`` library alone (the
same ``tokenizer.json``, the same post-processor); any other class, and chat templates, go through
``AutoTokenizer``, loaded on first use."""

from __future__ import annotations

import json
from pathlib import Path

# Classes whose Python side adds nothing to tokenizer.json's encoding (transformers 5 and 4 names).
_PLAIN = {"TokenizersBackend", "PreTrainedTokenizerFast"}
# tokenizer_config.json keys with which the Python side changes the encoding or adds tokens of its own.
_CHANGES_ENCODING = {"add_bos_token", "add_eos_token", "add_prefix_space", "legacy", "split_special_tokens",
                     "fix_mistral_regex", "additional_special_tokens", "extra_special_tokens"}


def plain_backend(directory: Path) -> bool:
    """Whether ``tokenizers`` alone encodes as transformers does for this tokenizer directory: the plain backend
    class, no settings or token lists that transformers applies on top of tokenizer.json, no padding or truncation
    saved in it (transformers turns those off per call; the raw library would apply them), and every special token
    the config names already among tokenizer.json's added tokens."""
    config, tokenizer = directory / "tokenizer_config.json", directory / "tokenizer.json"
    if not (config.is_file() and tokenizer.is_file()) or any(
            (directory / name).exists() for name in ("special_tokens_map.json", "added_tokens.json")):
        return False
    settings, spec = json.loads(config.read_text()), json.loads(tokenizer.read_text())
    if settings.get("tokenizer_class") not in _PLAIN or _CHANGES_ENCODING & settings.keys():
        return False
    if spec.get("padding") or spec.get("truncation"):
        return False
    added = {t.get("content") for t in spec.get("added_tokens", [])}
    named = [v.get("content") if isinstance(v, dict) else v for k, v in settings.items() if k.endswith("_token")]
    named += [v.get("content") for v in settings.get("added_tokens_decoder", {}).values() if isinstance(v, dict)]
    return all(t in added for t in named if t is not None)


class DriverTokenizer:
    def __init__(self, path: str) -> None:
        self.path, self._hf, self._fast = path, None, None
        if plain_backend(Path(path)):
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))

    @property
    def hf(self):
        if self._hf is None:
            from transformers import AutoTokenizer

            try:
                self._hf = AutoTokenizer.from_pretrained(self.path)
            except AttributeError as e:  # (raised out of a property, it would send Python to __getattr__)
                raise RuntimeError(f"cannot load the tokenizer of {self.path}: {e}") from e
        return self._hf

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self._fast is not None:
            return self._fast.encode(text, add_special_tokens=add_special_tokens).ids
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens))

    def __getattr__(self, name: str):  # chat_template, apply_chat_template, ...: the Hugging Face tokenizer's
        if name.startswith("_") or name == "hf":
            raise AttributeError(name)
        return getattr(self.hf, name)
