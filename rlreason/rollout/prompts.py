"""A problem's prompt as token ids: plain text, or the model's chat template around ``meta["messages"]``."""

from __future__ import annotations

from rlreason.types import Problem


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of ``messages`` in the tokenizer's chat template, ready for the assistant's turn.

    Rendered to text, then encoded without special tokens (the template writes its own, e.g. a BOS), as vLLM's
    own chat path does. (``tokenize=True`` returns a ``BatchEncoding`` in transformers 5: ``list()`` of it gave
    its keys.)"""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("tasks.template is 'chat' but the model's tokenizer has no chat template")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer.encode(text, add_special_tokens=False))


def prompt_ids(tokenizer, problem: Problem) -> list[int]:
    """The prompt's token ids: ``meta["prompt_ids"]`` as given (the primitive API); with ``meta["messages"]`` the
    model's chat template; else the prompt's text encoded."""
    if "prompt_ids" in problem.meta:
        return list(problem.meta["prompt_ids"])
    messages = problem.meta.get("messages")
    if messages:
        return chat_prompt_ids(tokenizer, messages)
    return tokenizer.encode(problem.prompt)
