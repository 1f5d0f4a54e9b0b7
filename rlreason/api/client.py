"""``rlreason.connect``: the run's engines and learners, driven from Python by four primitives and their helpers.

    with rlreason.connect(model="tiny", lora_rank=8) as rl:
        groups = rl.sample(["1+2="], n=4, max_tokens=16)
        out = rl.forward_backward([Datum.from_sample(s, a) for s, a in ...], loss="importance_sampling")
        rl.optim_step(lr=1e-4)
        rl.sync()  # the next sample uses the new weights

Everything runs on the actors ``rlreason train`` uses, started by the same ``session`` (run directory, metrics,
Ray, engines, learner group, weight push, and the watchdog that ends them with this process); a loss function
travels to the learners. One client per run: a second one on the same run directory is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import numbers
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from rlreason.api.records import TARGETS, APIError, Datum, Result, Sample, check_datum, check_values, rows
from rlreason.recipe import RunConfig
from rlreason.types import Problem

LOCK = "client.lock"


class Client:
    """A connected run (see the module). Calls are synchronous; each raises ``APIError`` (one line) for bad input
    and leaves the run as it was."""

    def __init__(self, cfg: RunConfig, console=None) -> None:
        from rlreason.drivers.train import session

        self.cfg, self._stack = cfg, contextlib.ExitStack()
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _hold(cfg.run_dir / LOCK)
        try:  # (Ctrl-C stays the script's: a KeyboardInterrupt where it is, the with-block then ends the run)
            self._run = self._stack.enter_context(session(cfg, console=console, handle_signals=False))
            self.ctx, self.run_dir = self._run.ctx, self._run.run_dir
            self.model_dir = cfg.model.resolved_path()
            self.model_name = cfg.model.path
            self.lora_rank = cfg.model.lora_rank
            self.vocab_size = _vocab_size(self.model_dir)
        except BaseException:
            self.close()
            raise
        self.version, self._calls = 0, 0
        self._loaded: str | None = None  # a state loaded into the learner that the engines do not serve yet

    # -- sampling ---------------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        """The model's Hugging Face tokenizer (``encode``, ``decode``, its chat template)."""
        return self.ctx.tokenizer.hf

    def sample(self, prompts: list, n: int = 1, max_tokens: int | None = None, temperature: float | None = None,
               top_p: float | None = None, stop: list | None = None, seed: int | None = None) -> list[list[Sample]]:
        """``n`` completions of each prompt (text, token ids, or a ``Problem``) from the weights last ``sync``ed.
        None: the recipe's value. ``seed``: the same seed and prompts give the same samples (``rlreason train``
        samples its step k with seed k); default: the client's own count of calls."""
        from rlreason.controller import generate, reseed_engines, sampling_spec

        if self._loaded is not None:
            raise APIError(f"sample: the learner holds the state loaded from {self._loaded!r} but the engines still "
                           "serve the weights from before it: call sync() first")
        problems = [self._problem(i, p) for i, p in enumerate(prompts)]
        spec = sampling_spec(self.cfg, n, temperature)
        spec = type(spec)(n, spec.max_tokens if max_tokens is None else max_tokens, spec.temperature,
                          spec.top_p if top_p is None else top_p, spec.ignore_eos, spec.episode, tuple(stop or ()))
        if n < 1 or spec.max_tokens < 1:
            raise APIError(f"sample: n and max_tokens must be >= 1 (got n={n}, max_tokens={spec.max_tokens})")
        self._check_prompts(problems, spec.max_tokens)
        self._calls += 1
        reseed_engines(self.ctx, self._calls if seed is None else seed, "rollout" if seed is not None else "api")
        return [[Sample(c.prompt_ids, c.completion_ids, c.logprobs, c.text, c.finish_reason, c.policy_version)
                 for c in group] for _, group in generate(self.ctx, problems, spec)]

    def _problem(self, i: int, prompt) -> Problem:
        if isinstance(prompt, Problem):
            return prompt
        if isinstance(prompt, str):
            return Problem(f"api-{i}", prompt, None, "")
        if isinstance(prompt, (list, tuple)) and all(isinstance(t, numbers.Integral) for t in prompt):
            return Problem(f"api-{i}", "", None, "", meta={"prompt_ids": [int(t) for t in prompt]})
        raise APIError(f"prompts[{i}]: a string, a list of token ids or a Problem, got {type(prompt).__name__}")

    def _check_prompts(self, problems: list[Problem], max_tokens: int) -> None:
        """APIError for the first prompt with no tokens, a token outside the vocabulary, or too long for
        ``model.max_model_len`` with ``max_tokens`` (counted here, as the engines will encode them)."""
        from rlreason.controller import prompt_lengths

        for i, (problem, length) in enumerate(zip(problems, prompt_lengths(self.ctx, problems))):
            ids = problem.meta.get("prompt_ids")
            bad = next((t for t in ids if not 0 <= t < self.vocab_size), None) if ids is not None else None
            if ids is not None and (bad is not None or not ids):
                raise APIError(f"prompts[{i}]: no tokens" if not ids else f"prompts[{i}]: token id {bad} is outside "
                               f"the vocabulary (0..{self.vocab_size - 1})")
            if length + max_tokens > self.cfg.model.max_model_len:
                raise APIError(f"prompts[{i}]: {length} prompt tokens + max_tokens {max_tokens} exceed "
                               f"model.max_model_len {self.cfg.model.max_model_len}")

    def problems(self) -> Iterator[Problem]:
        """The recipe's training problems (``tasks.train``), endless, as ``rlreason train`` draws them."""
        from rlreason.controller import problem_stream

        return problem_stream(self.cfg)

    def score(self, problem: Problem, samples: list[Sample]) -> list[float]:
        """Each sample's reward from the problem's verifier (the recipe's composite rewards, if any)."""
        from rlreason.scoring import score_composite

        items = [(s.text, problem) for s in samples]
        terms, scorer = self.cfg.tasks.rewards, self.ctx.scorer
        results = score_composite(scorer, items, terms) if terms else scorer.score(items)
        return [r.score for r in results]

    # -- training ---------------------------------------------------------------------------------------------
    def forward_backward(self, batch: list[Datum], loss: str | Callable = "importance_sampling",
                         loss_config: dict | None = None) -> Result:
        """The loss of ``batch`` and its gradient, added to the gradient accumulated since the last
        ``optim_step``. ``loss``: a Tinker loss name (cross_entropy, importance_sampling, ppo, cispo: sums over
        tokens), any registered algorithm's name, also as ``algorithm:NAME`` where Tinker has the name (its loss,
        normalised as ``rlreason train`` does), or a function
        ``LossInputs -> loss | (loss, metrics)`` (it runs in the learners)."""
        return self._call("forward_backward", batch, loss, loss_config, backward=True)

    def forward(self, batch: list[Datum], loss: str | Callable = "importance_sampling",
                loss_config: dict | None = None) -> Result:
        """``forward_backward`` without the gradient: logprobs and the loss under the current weights."""
        return self._call("forward_backward", batch, loss, loss_config, backward=False)

    def _call(self, method: str, batch: list[Datum], loss, loss_config, backward: bool) -> Result:
        import cloudpickle
        import ray

        from rlreason.algorithms.primitive_losses import resolve_loss

        if not batch:
            raise APIError(f"{method}: the batch is empty")
        try:
            fn = resolve_loss(loss, self.cfg.algorithm, loss_config)
        except ValueError as e:
            raise APIError(str(e)) from None
        for i, datum in enumerate(batch):
            check_datum(i, datum, self.cfg.model.max_model_len, getattr(fn, "requires", ()))
        data = datum_batch(batch, self.vocab_size)
        out = ray.get(self.ctx.learner.forward_backward.remote(data, cloudpickle.dumps(fn), backward))
        if out.error is not None:
            raise APIError(f"{method}: {out.error}")
        rows = out.logprobs
        return Result(out.loss, [rows[i, :len(d.tokens)].tolist() for i, d in enumerate(batch)],
                      {k: float(v) for k, v in out.metrics.items()})

    def optim_step(self, lr: float | None = None, beta1: float | None = None, beta2: float | None = None,
                   eps: float | None = None, weight_decay: float | None = None,
                   max_grad_norm: float | None = None) -> dict[str, float]:
        """One AdamW step on the accumulated gradient, then the gradient is cleared. None: the recipe's value for
        this step (``lr``: ``train.lr`` under its warm-up schedule, which then advances; ``max_grad_norm``:
        ``train.max_grad_norm``; ``eps``: 1e-8); ``max_grad_norm=0``: no clipping. Returns the step's metrics
        (``grad_norm``, ``lr``, ``version``), also written to the run's metrics.jsonl."""
        import ray

        negative = [k for k, v in (("lr", lr), ("max_grad_norm", max_grad_norm), ("eps", eps),
                                   ("weight_decay", weight_decay)) if v is not None and v < 0]
        if negative:
            raise APIError(f"optim_step: {negative[0]} must be >= 0 (None: the recipe's value)")
        out = ray.get(self.ctx.learner.optim_step.remote(lr, beta1, beta2, eps, weight_decay, max_grad_norm))
        if out.error is not None:
            raise APIError(f"optim_step: {out.error}")
        metrics = {**out.metrics, "version": float(out.version)}
        self._run.log.write(out.version, metrics)
        return metrics

    def sync(self) -> int:
        """Push the learner's weights (or adapter) into every engine: later samples use them. Returns the version
        now served."""
        import ray

        from rlreason.controller import push_weights

        version = ray.get(self.ctx.learner.get_version.remote())
        # (a rollout worker revived meanwhile serves the learner's weights of then: ask the engines themselves)
        newest = max([self.version, *ray.get([w.get_version.remote() for w in self.ctx.workers])])
        if version != newest or self._loaded is not None:  # (the weights served already: nothing to push)
            if self._loaded is not None and version <= newest:  # a restored state: new to the engines
                version = ray.get(self.ctx.learner.advance_version.remote(newest))
            push_weights(self.ctx)
        self.version, self._loaded = version, None
        return self.version

    # -- checkpoints ------------------------------------------------------------------------------------------
    def save(self, name: str) -> str:
        """The learner's whole state (weights or adapter, optimizer, schedule, version) under ``<run>/saved/NAME``;
        written whole or not at all."""
        import ray

        root = self.run_dir / "saved"
        _check_name(name)
        tmp, final = root / f".tmp-{name}", root / name
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ray.get(self.ctx.learner.save_checkpoint.remote(str(tmp.resolve())))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        return str(final)

    def load(self, name: str, optimizer: bool = True) -> int:
        """Restore a state ``save`` wrote (``sync`` then serves it); ``optimizer=False``: the weights (and schedule)
        alone, Adam's moments start afresh. Returns its version."""
        import ray

        _check_name(name)
        path = self.run_dir / "saved" / name
        if not (path / "learner.pt").is_file():
            have = sorted(p.name for p in (self.run_dir / "saved").glob("*") if not p.name.startswith("."))
            raise APIError(f"load: no saved state {name!r} in {self.run_dir / 'saved'} (saved: "
                           f"{', '.join(have) or 'none'})")
        self._loaded = name  # (before the call: an interrupted load may still have happened in the learner)
        version = ray.get(self.ctx.learner.load_checkpoint.remote(str(path.resolve())))
        if not optimizer:
            ray.get(self.ctx.learner.forget_optimizer.remote())
        self._loaded = name
        return version

    def export(self, name: str) -> str:
        """The current policy as a Hugging Face model directory (LoRA: the adapter) under ``<run>/NAME``."""
        import ray

        _check_name(name)
        return ray.get(self.ctx.learner.save.remote(str((self.run_dir / name).resolve())))

    # -- life -------------------------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self._lock.close()  # (closing the file releases the lock)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def datum_batch(batch: list[Datum], vocab: int):
    """Datums checked for form -> the learner's padded ``DatumBatch`` (built with NumPy, the values checked on the
    whole batch at once: APIError for a token outside the vocabulary or a NaN/inf target)."""
    import numpy as np
    import torch

    from rlreason.types import DatumBatch, TrainBatch

    lengths = [len(d.tokens) for d in batch]
    ids = rows(batch, lambda d: d.tokens, np.int64, "tokens")
    grids = {key: rows(batch, lambda d, k=key: d.targets.get(k), np.float32, f"targets[{key!r}]")
             for key in TARGETS if any(key in d.targets for d in batch)}
    check_values(ids, lengths, vocab, grids)
    if "mask" not in grids or not all("mask" in d.targets for d in batch):  # (default: all but position 0)
        mask = (np.arange(ids.shape[1])[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)
        mask[:, 0] = 0.0
        for i, d in enumerate(batch):
            if "mask" in d.targets:
                mask[i] = grids["mask"][i]
        grids["mask"] = mask
    t = {key: torch.from_numpy(grid) for key, grid in grids.items()}
    attention = (torch.arange(ids.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()
    first_free = 1 + max((d.group for d in batch if d.group is not None), default=-1)  # (implicit: a group each)
    groups = torch.tensor([first_free + i if d.group is None else d.group for i, d in enumerate(batch)],
                          dtype=torch.long)
    zeros = torch.zeros(ids.shape, dtype=torch.float32)
    train = TrainBatch(input_ids=torch.from_numpy(ids), attention_mask=attention, loss_mask=t["mask"],
                       rollout_logprobs=t.get("logprobs", zeros), rewards=torch.zeros(len(batch)), group_ids=groups,
                       policy_version=torch.zeros(len(batch), dtype=torch.long))
    return DatumBatch(train, t.get("advantages", zeros), t.get("weights"), t.get("old_logprobs"))


def _hold(path: Path):
    """An exclusive lock on ``path`` for the client's life; APIError when another client holds it."""
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise APIError(f"run {path.parent} already has a client (pid {holder}): one client per run (close it, or "
                       "connect with another run name)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith("."):
        raise APIError(f"name {name!r}: a plain name (no '/', not starting with '.')")


def _vocab_size(model_dir: str) -> int:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return int(config.get("vocab_size") or config.get("text_config", {}).get("vocab_size"))
