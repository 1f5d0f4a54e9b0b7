"""TRL interop, both ways.

- ``reward_function("math_answer")``: one of our verifiers as a TRL reward function, for ``GRPOTrainer(...,
  reward_funcs=[...])``. TRL calls it with the batch's ``prompts``, ``completions`` (text, or chat messages) and
  every other dataset column as a keyword list; the verifier's reference comes from the column named by
  ``reference`` (default ``"reference"``). Scoring goes through our runner: verifier processes with a hard
  deadline per call (and the code sandbox), so a hostile completion costs its own score, never the trainer.
- ``trl:module:function`` as a verifier name (``tasks.verifier``, a ``tasks.rewards`` term, ``rlreason verify``):
  a TRL-style reward function ``f(prompts, completions, **kwargs) -> list[float | None]`` scores one completion
  per call, with the reference as both ``reference`` and ``solution`` (TRL's own functions read ``solution``) and
  the problem's extra fields as keyword lists (None scores 0). Completions go as text; a function that fails on
  text (it indexes ``completion[0]["content"]``) gets TRL's conversational form instead. A completion is correct
  when its score reaches 1.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable

from rlreason.types import Problem
from rlreason.verifiers.trl_functions import as_verifier  # noqa: F401  (re-exported: TRL interop, both ways)


def _text(item) -> str:
    """A completion or prompt as text: TRL's conversational format is a list of {role, content} messages."""
    if isinstance(item, list):
        return "\n".join(str(m.get("content", "")) for m in item if isinstance(m, dict))
    return str(item)


def reward_function(verifier: str, reference: str = "reference", workers: int = 2,
                    timeout_s: float = 15.0) -> Callable[..., list[float]]:
    """A TRL reward function scoring with ``verifier`` (a registered name or ``module:function``)."""
    from rlreason.verifiers import get_verifier

    get_verifier(verifier)  # an unknown name fails here, not inside the trainer
    state: dict = {}

    def reward(prompts, completions, **columns) -> list[float]:
        if reference not in columns:
            raise ValueError(f"reward_function({verifier!r}): the dataset has no {reference!r} column "
                             f"(columns: {', '.join(sorted(k for k in columns if isinstance(columns[k], list)))}); "
                             "pass reference=<column>")
        if "scorer" not in state:
            from rlreason.scoring import Scorer

            state["scorer"] = Scorer(workers=workers, timeout_s=timeout_s)
            atexit.register(state["scorer"].close)
        items = [(_text(c), Problem(id=str(i), prompt=_text(p), reference=r, verifier=verifier))
                 for i, (p, c, r) in enumerate(zip(prompts, completions, columns[reference]))]
        return [r.score for r in state["scorer"].score(items)]

    reward.__name__ = verifier.replace(":", "_")
    reward.close = lambda: state.pop("scorer").close() if "scorer" in state else None
    return reward
