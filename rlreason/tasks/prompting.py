"""How a problem is put to the model: the prompt template (plain text, or the model's chat template) and few-shot
examples in front of it (``tasks.fewshot``).

Few-shot examples come from the task's training split, never from the evaluated one (MBPP: its own prompt split,
task ids 1-10; MATH-500 and AIME: MATH's training split), chosen once with a fixed seed, so every problem and every
run sees the same ones. Plain prompts get them as text (``prompt + solution``, a blank line apart); chat prompts as
earlier user/assistant turns, as lm-eval's ``fewshot_as_multiturn`` does.
"""

from __future__ import annotations

import functools
from dataclasses import replace

from rlreason.types import Problem


@functools.lru_cache(maxsize=64)
def fewshot_examples(task: str, k: int, data_dir: str | None) -> tuple[tuple[str, str], ...]:
    from rlreason.tasks.registry import get_task

    return tuple(get_task(task).fewshot_examples(k, data_dir))


def formatted(problem: Problem, template: str, shots: tuple[tuple[str, str], ...] = ()) -> Problem:
    """``problem`` as the engines will see it: ``meta["messages"]`` for the chat template (a chat column keeps its
    own turns, after the examples), the examples prepended as text for plain prompts."""
    if template == "chat":
        turns = [m for prompt, solution in shots for m in ({"role": "user", "content": prompt},
                                                            {"role": "assistant", "content": solution})]
        own = problem.meta.get("messages") or [{"role": "user", "content": problem.prompt}]
        return replace(problem, meta={**problem.meta, "messages": turns + own}) if turns or \
            "messages" not in problem.meta else problem
    if not shots:
        return problem
    return replace(problem, prompt="".join(f"{prompt}{solution}\n\n" for prompt, solution in shots) + problem.prompt)
