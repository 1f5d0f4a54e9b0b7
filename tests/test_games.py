"""Two-player textarena games played by the policy on both seats: the names are checked when the recipe is read
(an unknown game, or one that needs the network, is one line); a real model (SmolLM2) plays TicTacToe against
itself and trains on both seats' turns, each seat a sample with the game's zero-sum reward."""


import pytest
from recipe_runs import train

pytest.importorskip("textarena", reason="the textarena package (rlreason[envs])")


def test_games_are_checked_when_the_recipe_is_read():
    from rlreason.recipe import load_config
    from rlreason.tasks import get_task

    cfg = load_config(None, ["tasks.train=[{game: TicTacToe-v0}]", "tasks.eval=[game:Nim-v0]"])
    assert cfg.tasks.train == ("game:TicTacToe-v0",)
    task = get_task("game:TicTacToe-v0")
    held, train = task.eval_problems(8), [p for p, _ in zip(task.train_problems(0), range(200))]
    assert not {p.prompt for p in held} & {p.prompt for p in train}  # evaluation seeds are never trained
    assert next(task.train_problems(3)) == next(task.train_problems(3))  # the run's seed draws the games
    with pytest.raises(Exception, match=r"unknown textarena game 'TicTacToe-v9'; did you mean \['TicTacToe-v0'"):
        load_config(None, ["tasks.train=[game:TicTacToe-v9]"])
    with pytest.raises(Exception, match="game:SpellingBee-v0 cannot be played here"):  # (an NLTK download)
        load_config(None, ["tasks.train=[game:SpellingBee-v0]"])


@pytest.mark.slow  # SmolLM2 on CPU: ~3 min
def test_smollm2_plays_tictactoe_against_itself_and_trains_on_both_seats(tmp_path):
    from test_smollm2 import smollm2  # noqa: F401  (makes sure the model is converted)
    steps, _, _ = train(tmp_path, "model: {path: smollm2}\ntasks:\n  train: [{game: TicTacToe-v0}]\n"
                        "  eval: [game:TicTacToe-v0]\n  eval_size: 2\nrollout: {prompts_per_step: 2, group_size: 2, "
                        "max_tokens: 12}\ntrain: {steps: 2}\nenv: {max_turns: 12}\neval: {before: false, samples: 1}\n"
                        "output: {tensorboard: false}\nname: t\n", "t", timeout=900)
    # every game played to its end; each seat's moves joined into one row with the game's messages as context (a
    # seat that never moved, its opponent having lost by two invalid moves, has no sample: zero-sum is exact only
    # when both moved, as tests/test_agents.py checks on two actors)
    assert len(steps) == 2 and all(s["episode_end/done"] == 1.0 and -1 <= s["reward_mean"] <= 1 for s in steps)
    assert all(s["episode_turns"] >= 1 and s["context_tokens"] > 0 and s["logprob_mismatch"] < 1e-3 for s in steps)
