"""``team``: a pool of models (the base model and adapters, served at once by the engines) answers a problem turn by
turn; before each turn a coordinator reads the transcript and picks who writes it and in which role, or stops
(TRINITY, arXiv 2512.04695). The final answer is the last turn of a role that answers (``worker`` by default); the
problem's own verifier judges it (``rewards = False``).

The member that writes the next turn is the environment's ``member`` attribute: the episode loop samples that turn
under the member's adapter (``RolloutEngine.member_lora``), so a team episode is an ordinary multi-turn episode, with
the same token record, masks and limits. The coordinator (``rlreason.envs.coordinator``) is a linear head over a
frozen encoder (an ES member's head regenerated from its seed), or a scripted list of choices (``fixed``: how each
member alone is measured). A choice the pool cannot serve (a member or role it lacks) is written into the transcript
as an error and costs its turn; it never fails the episode.
"""

from __future__ import annotations

import random
import zlib

from rlreason.envs.base import Environment, StepResult, environment
from rlreason.types import Problem


@environment("team")
class Team(Environment):
    """A pool of members takes turns on a problem, routed by a coordinator; the last worker's answer is judged."""

    rewards = False

    def __init__(self, members: list[str], roles: list[dict], max_turns: int = 3, encoder: str | None = None,
                 head: list | None = None, seed: int | None = None, sign: int = 1, sigma: float = 0.0,
                 sample: bool = False, draw: int = 0, fixed: list | None = None, center: list | None = None,
                 **config) -> None:
        super().__init__(**config)
        self.members, self.roles = list(members), {r["name"]: r for r in roles}
        self.max_turns, self.fixed = max_turns, None if fixed is None else [tuple(c) if c else None for c in fixed]
        self.head = None
        if fixed is None:
            import torch

            from rlreason.envs.coordinator import Encoder, choices, member_head

            self.encoder = Encoder.of(encoder)
            self.options = choices(self.members, list(self.roles))
            mean = torch.tensor(head, dtype=torch.float32) if head is not None else \
                torch.zeros(self.encoder.dim, len(self.options))
            self.head = member_head(mean, seed, sign, sigma)
            self.center = None if center is None else torch.tensor(center, dtype=torch.float32)
        self.sample, self.draw = sample, draw
        self.member: str | None = None
        self.info: dict = {"choices": [], "errors": 0}

    def reset(self, problem: Problem):
        self.chat = "messages" in problem.meta
        self.rng = random.Random(zlib.crc32(f"{problem.id}/{self.draw}".encode())) if self.sample else None
        self.text, self.turns, self.answer, self._last = problem.prompt, 0, None, None
        notes = self._choose(first=True)
        prompt = self._role_prompt()
        self.text += notes + prompt
        if not self.chat:
            return problem.prompt + notes + prompt
        messages = [dict(m) for m in problem.meta["messages"]]
        messages[-1]["content"] = messages[-1]["content"] + notes + prompt
        return messages

    def step(self, action: str) -> StepResult:
        self.turns += 1
        self.text += action
        if self.roles[self.info["choices"][-1][1]].get("answers", False) and action.strip():
            self.answer = action  # (an empty answer does not replace an earlier one)
        self._last = action
        if self.turns >= self.max_turns:
            return self._done()
        notes = self._choose(first=False)
        if self.member is None:
            return self._done()
        prompt = notes + self._role_prompt()
        self.text += prompt
        if self.chat:
            return StepResult(observation=[{"role": "user", "content": prompt.strip() or "Continue."}], info=self.info)
        return StepResult(observation=prompt, info=self.info)  # (info: the choices so far, if a limit ends it here)

    def final_answer(self) -> str | None:
        """The text the problem's verifier judges: the last non-empty answer, else (no answering role spoke, or a
        limit ended the episode first) the last turn."""
        return self.answer if self.answer is not None else self._last

    def _done(self) -> StepResult:
        self.member = None
        return StepResult(done=True, info=self.info)

    def _choose(self, first: bool) -> str:
        """Pick the next (member, role), or stop (``member`` None); invalid picks become error notes (each costs a
        turn); returns the notes."""
        notes = ""
        while self.turns < self.max_turns:
            pick = self._pick(allow_stop=not first)
            if pick is None and not first:
                self.member = None
                return notes
            member, role = pick or (None, None)
            if pick is None:  # (a scripted coordinator that stops before the first turn)
                self.info["errors"] += 1
                self.turns += 1
                notes += "\n[coordinator error: it stopped before the first turn]"
            elif member in self.members and role in self.roles:
                self.member = member
                self.info["choices"].append([member, role])
                return notes
            else:
                self.info["errors"] += 1
                self.turns += 1
                notes += (f"\n[coordinator error: no member {member!r} (members: {', '.join(self.members)})]"
                          if member not in self.members else
                          f"\n[coordinator error: no role {role!r} (roles: {', '.join(self.roles)})]")
        self.member = None if not first else self.members[0]  # (nothing valid: the first member answers)
        if first:
            self.info["choices"].append([self.members[0], next(iter(self.roles))])
        return notes

    def _pick(self, allow_stop: bool):
        if self.fixed is not None:
            k = len(self.info["choices"]) + self.info["errors"]
            return self.fixed[k] if k < len(self.fixed) else None
        from rlreason.envs.coordinator import decide

        features = self.encoder.features(self.text, self.center)
        k = decide(self.head, features, allow_stop, self.rng)
        if self.sample:
            self.info.setdefault("decisions", []).append([features.tolist(), k, allow_stop])
        return self.options[k]  # (None: stop)

    def _role_prompt(self) -> str:
        """The chosen role's prompt, after a blank line (none for a role without one)."""
        prompt = self.roles[self.info["choices"][-1][1]].get("prompt", "") if self.member is not None else ""
        return f"\n\n{prompt}" if prompt else ""
