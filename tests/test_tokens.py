"""The driver's tokenizer (no transformers import when the tokenizer is the plain backend) encodes exactly as the
engines' Hugging Face tokenizer."""

TEXTS = ["24+43+38=?\n", "  leading and trailing spaces  ", "",
         "unicode: café – π ≈ 3.14159\n\n\tTabs", "<eos> in text"]


def test_the_driver_tokenizer_encodes_as_transformers_does(tiny_model_path, tiny_chat_model):
    from transformers import AutoTokenizer

    from rlreason.tokens import DriverTokenizer

    for path in (tiny_model_path, tiny_chat_model):
        ours, theirs = DriverTokenizer(path), AutoTokenizer.from_pretrained(path)
        assert ours._fast is not None  # the fast path is taken for the embedded model
        for text in TEXTS:
            for special in (True, False):
                assert ours.encode(text, add_special_tokens=special) == theirs.encode(text,
                                                                                      add_special_tokens=special)
    chat = DriverTokenizer(tiny_chat_model)
    assert chat.chat_template and chat.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
