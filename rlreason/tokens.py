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
# tokenizer_config.json keys with which the Python side changes the encoding.
_CHANGES_ENCODING = {"add_bos_token", "add_eos_token", "add_prefix_space", "legacy"}


class DriverTokenizer:
    def __init__(self, path: str) -> None:
        self.path, self._hf, self._fast = path, None, None
        config, tokenizer = Path(path) / "tokenizer_config.json", Path(path) / "tokenizer.json"
        if config.is_file() and tokenizer.is_file():
            settings = json.loads(config.read_text())
            if settings.get("tokenizer_class") in _PLAIN and not _CHANGES_ENCODING & settings.keys():
                from tokenizers import Tokenizer

                self._fast = Tokenizer.from_file(str(tokenizer))

    @property
    def hf(self):
        if self._hf is None:
            from transformers import AutoTokenizer

            self._hf = AutoTokenizer.from_pretrained(self.path)
        return self._hf

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self._fast is not None:
            return self._fast.encode(text, add_special_tokens=add_special_tokens).ids
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens))

    def __getattr__(self, name: str):  # chat_template, apply_chat_template, ...: the Hugging Face tokenizer's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.hf, name)
