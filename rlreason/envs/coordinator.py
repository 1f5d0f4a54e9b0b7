"""The team's coordinator (TRINITY, arXiv 2512.04695): a linear head over a frozen encoder's hidden state of the
transcript, scoring every (member, role) pair and "stop"; and the scripted coordinator (a fixed list of choices).

The encoder is a causal language model (by default the pool's base model) loaded once per process, frozen; a
transcript's features are its middle layer's hidden states, averaged over the tokens, scaled to unit length, with a
constant 1 appended (the head's bias). (On the embedded model the middle layer tells the task families apart best:
nearest-centroid accuracy 1.00 on addition/subtraction/programs prompts, against 0.92 for the last layer, whose
addition and subtraction centroids have cosine 0.97.) The head is a (features x choices) matrix. ES members are
the mean head plus ``sigma * sign * eps(seed)``, the noise regenerated from the seed in whichever process plays the
episode (``rlreason.algorithms.es.noise``: only the seed travels).
"""

from __future__ import annotations

import math
import random

import torch

from rlreason.algorithms.es import noise

HEAD = "coordinator"  # the head's name in ES noise (seed, name, shape)
_encoders: dict[str, "Encoder"] = {}


def choices(members: list[str], roles: list[str]) -> list[tuple[str, str] | None]:
    """The head's outputs, in order: every (member, role), then ``None`` (stop)."""
    return [(m, r) for m in members for r in roles] + [None]


class Encoder:
    """A frozen causal LM's mean middle-layer hidden state of a text (cached: members and samples of one problem
    share their first transcript)."""

    def __init__(self, path: str, max_len: int = 256) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging

        logging.disable_progress_bar()  # (a run's console shows its own progress)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.max_len = min(max_len, getattr(self.model.config, "max_position_embeddings", max_len))
        self.dim = int(self.model.config.hidden_size) + 1
        self.layer = max(1, int(self.model.config.num_hidden_layers) // 2)
        self._cache: dict[str, torch.Tensor] = {}

    @classmethod
    def of(cls, path: str) -> "Encoder":
        if path not in _encoders:
            _encoders[path] = cls(path)
        return _encoders[path]

    @staticmethod
    def release(path: str) -> None:
        _encoders.pop(path, None)

    @torch.no_grad()
    def hidden(self, text: str) -> torch.Tensor:
        """The text's mean middle-layer hidden state, scaled to unit length."""
        if text not in self._cache:
            if len(self._cache) > 8192:
                self._cache.clear()
            ids = self.tokenizer.encode(text)[-self.max_len:] or [self.tokenizer.eos_token_id or 0]
            out = self.model(torch.tensor([ids]), output_hidden_states=True)
            h = out.hidden_states[self.layer][0].float().mean(0)
            self._cache[text] = h / h.norm().clamp_min(1e-6)
        return self._cache[text]

    def features(self, text: str, center: torch.Tensor | None = None) -> torch.Tensor:
        """The head's input: the hidden state minus ``center`` (what all transcripts share), and a 1 (the bias)."""
        h = self.hidden(text)
        return torch.cat([h if center is None else h - center, torch.ones(1)])

    def center(self, texts: list[str]) -> torch.Tensor:
        """The mean hidden state of ``texts`` (the coordinator's training prompts): subtracted, it leaves what tells
        transcripts apart (on the embedded model, addition and subtraction prompts' mean states have cosine 0.88)."""
        return torch.stack([self.hidden(t) for t in texts]).mean(0)


def head_shape(dim: int, members: list[str], roles: list[str]) -> tuple[int, int]:
    return dim, len(choices(members, roles))


def member_head(mean: torch.Tensor, seed: int | None, sign: int, sigma: float) -> torch.Tensor:
    """The head an ES member plays with: the mean, plus its noise when it has a seed."""
    if seed is None:
        return mean
    return mean + sigma * sign * noise(seed, HEAD, tuple(mean.shape))


def probabilities(head: torch.Tensor, features: torch.Tensor, allow_stop: bool) -> torch.Tensor:
    logits = features @ head
    if not allow_stop:
        logits = logits.clone()
        logits[-1] = -math.inf
    return torch.softmax(logits, dim=0)


def decide(head: torch.Tensor, features: torch.Tensor, allow_stop: bool, rng: random.Random | None) -> int:
    """The chosen output: the most probable (``rng`` None), or one drawn from the head's softmax."""
    p = probabilities(head, features, allow_stop)
    if rng is None:
        return int(torch.argmax(p))
    return int(torch.multinomial(p, 1, generator=torch.Generator().manual_seed(rng.getrandbits(62))))


def policy_gradient(head: torch.Tensor, decisions: list[tuple[list[float], int, bool]], advantage: float
                    ) -> torch.Tensor:
    """advantage * d/d(head) of sum log p(choice | features): each decision adds features x (onehot - p)."""
    grad = torch.zeros_like(head)
    for features, pick, allow_stop in decisions:
        f = torch.tensor(features, dtype=torch.float32)
        p = probabilities(head, f, allow_stop)
        p[pick] -= 1.0
        grad -= advantage * torch.outer(f, p)
    return grad
