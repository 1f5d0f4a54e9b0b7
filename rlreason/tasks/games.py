"""Two-player text games of the ``textarena`` package as tasks: ``game:ID`` (e.g. ``game:TicTacToe-v0``) names a
game; its problems are seeds, each played by the policy on both seats (``rlreason.envs.games:self_play``). Each
seat's turns are a sample of their own with the game's zero-sum reward (+1 win, -1 loss, 0 draw), so a group of n
games has 2n samples. The evaluation set is a fixed range of seeds, never drawn by the training stream.

Games that need the network (an NLTK word list, an LLM jury) or do not import on this Python are refused when the
recipe is read, in one line. ``pip install 'rlreason[envs]'`` installs textarena.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from rlreason.registry import UnknownNameError
from rlreason.types import ENV_REWARD, Problem

PREFIX = "game"
PROGRAM = "rlreason.envs.games:self_play"
_EVAL_SEEDS = 1_000_000  # evaluation games use seeds from here on; training draws below it


@lru_cache(maxsize=None)
def _ids() -> tuple[str, ...]:
    try:
        import textarena.envs.registration as registration
    except ImportError as e:
        raise UnknownNameError(f"game:ID needs the textarena package: pip install 'rlreason[envs]' ({e})") from None
    return tuple(sorted(registration.ENV_REGISTRY))


def check_game(game: str) -> None:
    """One line for an unknown game, or one that cannot be played here (it needs the network, or fails to start)."""
    if game not in _ids():
        close = difflib.get_close_matches(game, _ids(), n=3)
        raise UnknownNameError(f"unknown textarena game {game!r}" + (f"; did you mean {close}?" if close else ""))
    import textarena as ta

    try:
        env = ta.make(game)
        env.reset(num_players=2, seed=0)
        env.get_observation()
    except Exception as e:  # noqa: BLE001 - a game that cannot start here, whatever the reason, is one line
        raise UnknownNameError(f"game:{game} cannot be played here (two players, offline): {type(e).__name__}: "
                               f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None


@dataclass(frozen=True)
class GameTask:
    game: str
    held_out_size = None  # (any number of evaluation games: tasks.eval_size of them, 64 by default)
    max_tokens: int | None = 32  # per move

    @property
    def name(self) -> str:
        return f"{PREFIX}:{self.game}"

    @property
    def description(self) -> str:
        return f"the textarena game {self.game}, the policy on both seats (zero-sum)"

    def _problem(self, seed: int) -> Problem:
        env = {"name": "agent", "config": {"run": PROGRAM}}
        return Problem(id=f"{self.game}:{seed}", prompt=f"{self.game}, seed {seed}", reference="",
                       verifier=ENV_REWARD, task=self.name, meta={"env": env, "game": {"id": self.game,
                                                                                        "seed": seed}})

    def eval_problems(self, n: int | None = None, data_dir: str | None = None) -> list[Problem]:
        return [self._problem(_EVAL_SEEDS + i) for i in range(64 if n is None else n)]

    def held_out_prompts(self) -> set[str]:
        return set()  # (training seeds are drawn below the evaluation ones)

    def train_problems(self, seed: int, data_dir: str | None = None) -> Iterator[Problem]:
        rng = random.Random(f"{self.game}:{seed}")
        while True:
            yield self._problem(rng.randrange(_EVAL_SEEDS))


def resolve(game: str) -> GameTask:
    check_game(game)
    return GameTask(game)


def listing() -> dict[str, str]:
    return {f"{PREFIX}:ID": "a two-player textarena game (TicTacToe-v0, Nim-v0, KuhnPoker-v0, ...), self-play"}
