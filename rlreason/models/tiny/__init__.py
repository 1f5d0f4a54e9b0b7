"""The embedded default model: a ~0.8M-parameter Llama with a character tokenizer, trained by ``pretrain.py``."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"


def default_model_path() -> str:
    return str(WEIGHTS_DIR)
