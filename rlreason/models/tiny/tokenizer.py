"""The character-level tokenizer of the embedded tiny model.

One token per character keeps the vocabulary tiny (about 70 entries) and makes arithmetic digit-by-digit, which is
what lets a ~1M-parameter model learn multi-step sums. Saved as a standard ``tokenizer.json`` so that
transformers (``AutoTokenizer``) and vLLM load it like any other fast tokenizer.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>")
CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyz +-*/%=()[]{}<>?.,:;#'\"_!\n"


def build_tokenizer():
    """Return a ``transformers.PreTrainedTokenizerFast`` over single characters."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + tuple(CHARACTERS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Every character (newline included, hence not ".") is its own pre-token.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", model_max_length=256
    )


def save_tokenizer(directory: str | Path) -> None:
    build_tokenizer().save_pretrained(str(directory))
