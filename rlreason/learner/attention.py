"""The learner's attention kernel (``model.attention``).

On CPU, PyTorch's flash kernel (sdpa) is slower than plain matmul-softmax-matmul (eager) on short rows, measured on
this 2-core machine (107M Llama, bf16 autocast, forward + backward): eager 6.4 vs sdpa 7.2 s at 32 x 80 tokens, 5.7
vs 7.2 at 8 x 256, 5.9 vs 6.4 at 4 x 512, but 17.2 vs 11.3 at 4 x 768. Eager also keeps every layer's attention
matrix for the backward pass (rows x heads x width^2 per layer), which sdpa does not. So ``auto`` loads the model
with eager on CPU and, before each forward with gradients, falls back to sdpa when the micro-batch's rows are long
or its attention matrices would not fit ``EAGER_BUDGET_BYTES``; on GPU it is sdpa (Hugging Face's default).
"""

from __future__ import annotations

EAGER_MAX_WIDTH = 512
EAGER_BUDGET_BYTES = 2 * 2**30
BYTES_PER_SCORE = 6  # the float32 probabilities the backward needs, plus their bfloat16 copy under autocast


def load_choice(setting: str, device_type: str) -> str:
    """The implementation the model is loaded with."""
    if setting != "auto":
        return setting
    return "eager" if device_type == "cpu" else "sdpa"


def eager_fits(config, rows: int, width: int, budget: int = EAGER_BUDGET_BYTES) -> bool:
    """Whether eager attention is the better kernel for a forward with gradients over ``rows`` x ``width``."""
    text = config.get_text_config()
    scores = rows * text.num_attention_heads * width * width * text.num_hidden_layers
    return width <= EAGER_MAX_WIDTH and scores * BYTES_PER_SCORE <= budget


def fit_attention(model, rows: int, width: int, budget: int = EAGER_BUDGET_BYTES) -> None:
    """Switch ``model`` (loaded with ``auto`` on CPU) to the kernel this micro-batch should use."""
    want = "eager" if eager_fits(model.config, rows, width, budget) else "sdpa"
    if model.config._attn_implementation != want:
        model.set_attn_implementation(want)
