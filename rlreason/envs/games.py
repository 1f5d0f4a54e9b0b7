"""Self-play: the policy on both seats of a two-player textarena game (``rlreason.tasks.games``), as an agent
program over the engine's endpoint. Each seat talks to the model through its own actor (``seat``): its turns are
its own conversation (the game's observation for that seat; later turns add only what is new in it, so a seat's
moves join into one row), a sample of its own, rewarded with the game's result for that seat (+1, -1, 0).

A move the game rejects gets the game's own retry message; a second one in a row loses the game (textarena's rule).
The game's random generator is Python's global one (textarena seeds it in ``reset``): a game is made and reset
without yielding to other games in between, so its start is the seed's.
"""

from __future__ import annotations

from rlreason.envs.agent import seat


async def self_play(client, problem):
    """One game; returns ``{"player0": reward, "player1": reward}``."""
    import textarena as ta

    game = problem.meta["game"]
    env = ta.make(game["id"])
    env.reset(num_players=2, seed=game["seed"])
    seats, conversations, seen = {}, {}, {}
    done = False
    while not done:
        player, observation = env.get_observation()
        name = f"player{player}"
        seats.setdefault(player, seat(client, name))
        messages = conversations.get(player)
        if messages is not None and observation.startswith(seen[player]):
            messages.append({"role": "user", "content": observation[len(seen[player]):]})
        else:  # (the first turn, or an observation that does not extend the last: a new conversation)
            messages = conversations[player] = [{"role": "user", "content": observation}]
        seen[player] = observation
        reply = await seats[player].chat.completions.create(model="policy", messages=messages)
        move = reply.choices[0].message.content or ""
        messages.append({"role": "assistant", "content": move})
        done, _ = env.step(action=move)
    rewards, _ = env.close()
    return {f"player{p}": float(r) for p, r in rewards.items() if p in seats}
