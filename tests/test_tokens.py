"""The driver's tokenizer (no transformers import when the tokenizer is the plain backend) encodes exactly as the
engines' Hugging Face tokenizer."""

TEXTS = ["24+43+38=?\n", "  leading and trailing spaces  ", "",
         "unicode: café – π ≈ 3.14159\n\n\tTabs", "<eos> in text"]


def test_the_driver_tokenizer_encodes_as_transformers_does(tiny_model_path, tiny_chat_model):
    from transformers import AutoTokenizer

    from rlreason.models.tokens import DriverTokenizer

    for path in (tiny_model_path, tiny_chat_model):
        ours, theirs = DriverTokenizer(path), AutoTokenizer.from_pretrained(path)
        assert ours._fast is not None  # the fast path is taken for the embedded model
        for text in TEXTS:
            for special in (True, False):
                assert ours.encode(text, add_special_tokens=special) == theirs.encode(text,
                                                                                      add_special_tokens=special)
    chat = DriverTokenizer(tiny_chat_model)
    assert chat.chat_template and chat.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)


def test_padding_truncation_or_extra_special_tokens_send_the_driver_to_transformers(tiny_model_path, tmp_path):
    """tokenizers alone would pad or truncate when tokenizer.json says so (transformers turns both off per call),
    and would split a special token that only the config names: such tokenizers go through transformers."""
    import json
    import shutil

    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from rlreason.models.tokens import DriverTokenizer

    padded = tmp_path / "padded"
    shutil.copytree(tiny_model_path, padded)
    raw = Tokenizer.from_file(str(padded / "tokenizer.json"))
    raw.enable_padding(length=32)
    raw.enable_truncation(3)
    raw.save(str(padded / "tokenizer.json"))
    extra = tmp_path / "extra"
    shutil.copytree(tiny_model_path, extra)
    config = json.loads((extra / "tokenizer_config.json").read_text())
    (extra / "tokenizer_config.json").write_text(json.dumps({**config, "extra_special_tokens": ["<tool>"]}))
    for path in (padded, extra):
        ours, theirs = DriverTokenizer(str(path)), AutoTokenizer.from_pretrained(path)
        assert ours._fast is None
        for text in TEXTS + ["<tool> call"]:
            assert ours.encode(text) == theirs.encode(text)
