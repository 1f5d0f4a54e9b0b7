"""The learner: trains the policy on a ``TrainBatch`` with whatever loss the algorithm registered.

It never branches on the algorithm: it looks the spec up by name and calls ``spec.loss(LossInputs, cfg)``.
One ``train_step`` = ``epochs`` passes over ``minibatches`` optimizer steps, each accumulated over micro-batches
of ``micro_batch_size`` sequences. Runs as a Ray actor in training and in-process in tests.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from rlreason.algorithms import LossInputs, get_algorithm
from rlreason.algorithms.common import masked_mean
from rlreason.config import RunConfig
from rlreason.learner.logprobs import token_logprobs
from rlreason.registry import load_plugins
from rlreason.types import TrainBatch, TrainStats, WeightUpdate


class Learner:
    def __init__(self, cfg: RunConfig, threads: int | None = None) -> None:
        load_plugins()
        from transformers import AutoModelForCausalLM

        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        self.algo = cfg.algorithm
        self.spec = get_algorithm(self.algo.name)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        path = cfg.model.resolved_path()
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(self.device)
        self.model.config.use_cache = False
        self.reference = None
        if self.algo.needs_reference:
            self.reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(self.device).eval()
            self.reference.requires_grad_(False)
        t = cfg.train
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2),
                                           weight_decay=t.weight_decay)
        warmup = max(t.warmup_steps, 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup))
        self.version = 0

    # -- training -------------------------------------------------------------------------------------------
    def train_step(self, batch: TrainBatch) -> TrainStats:
        start = time.perf_counter()
        self.model.train()
        batch = self._to_device(batch)
        t = self.cfg.train
        steps_per_batch = t.epochs * t.minibatches
        old, ref = self._frozen_logprobs(batch, need_old=steps_per_batch > 1)
        metrics: dict[str, list[float]] = {}
        for _ in range(t.epochs):
            order = torch.randperm(batch.size) if steps_per_batch > 1 else torch.arange(batch.size)
            for rows in order.chunk(t.minibatches):
                for key, value in self._optimizer_step(batch, rows, old, ref).items():
                    metrics.setdefault(key, []).append(value)
        self.version += 1
        out = {k: sum(v) / len(v) for k, v in metrics.items()}
        out["learner_time_s"] = time.perf_counter() - start
        return TrainStats(version=self.version, metrics=out)

    def _optimizer_step(self, batch: TrainBatch, rows: torch.Tensor, old, ref) -> dict[str, float]:
        t = self.cfg.train
        mask = batch.loss_mask[rows]
        num_tokens, num_seqs = float(mask.sum()), float(len(rows))
        sums: dict[str, float] = {}
        for micro in rows.split(t.micro_batch_size):
            ids, attn = batch.input_ids[micro], batch.attention_mask[micro]
            logp, entropy = token_logprobs(self.model, ids, attn, with_entropy=True)
            inputs = LossInputs(
                logprobs=logp, old_logprobs=logp.detach() if old is None else old[micro],
                advantages=batch.advantages[micro], loss_mask=batch.loss_mask[micro], num_tokens=num_tokens,
                num_sequences=num_seqs, max_tokens=self.cfg.rollout.max_tokens,
                ref_logprobs=None if ref is None else ref[micro], entropy=entropy,
                rollout_logprobs=batch.rollout_logprobs[micro])
            loss, algo_metrics = self.spec.loss(inputs, self.algo)
            loss.backward()
            share = float(batch.loss_mask[micro].sum()) / max(num_tokens, 1.0)
            m = batch.loss_mask[micro]
            mismatch = (inputs.old_logprobs - batch.rollout_logprobs[micro]).abs()
            # Each micro-batch loss is normalised by the whole step's counts, so their sum is the step's loss.
            step_metrics = {"loss": loss.item(),
                            "entropy": masked_mean(entropy.detach(), m),
                            "logprob_mismatch": masked_mean(mismatch, m), **algo_metrics}
            for k, v in step_metrics.items():
                sums[k] = sums.get(k, 0.0) + (v if k == "loss" else v * share)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        sums["grad_norm"] = float(grad_norm)
        sums["lr"] = self.scheduler.get_last_lr()[0]
        return sums

    @torch.no_grad()
    def _frozen_logprobs(self, batch: TrainBatch, need_old: bool):
        """Old-policy logprobs (only when several optimizer steps share the batch) and reference logprobs."""
        old = ref = None
        if need_old:
            self.model.eval()
            old = self._chunked_logprobs(self.model, batch)
            self.model.train()
        if self.reference is not None:
            ref = self._chunked_logprobs(self.reference, batch)
        return old, ref

    def _chunked_logprobs(self, model, batch: TrainBatch) -> torch.Tensor:
        parts = [token_logprobs(model, batch.input_ids[rows], batch.attention_mask[rows])[0]
                 for rows in torch.arange(batch.size).split(self.cfg.train.micro_batch_size)]
        return torch.cat(parts)

    def _to_device(self, batch: TrainBatch) -> TrainBatch:
        if self.device.type == "cpu":
            return batch
        return TrainBatch(**{k: v.to(self.device) for k, v in vars(batch).items()})

    # -- weights --------------------------------------------------------------------------------------------
    def export_weights(self) -> WeightUpdate:
        """Full weights under Hugging Face names, on CPU, for the rollout engines."""
        payload = [(name, p.detach().to("cpu", copy=True)) for name, p in self.model.state_dict().items()]
        return WeightUpdate(version=self.version, kind="full", payload=payload)

    @torch.no_grad()
    def sequence_logprobs(self, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
        self.model.eval()
        ids = torch.tensor([prompt_ids + completion_ids], device=self.device)
        logp, _ = token_logprobs(self.model, ids, torch.ones_like(ids))
        return logp[0, len(prompt_ids):].tolist()

    @torch.no_grad()
    def batch_loss(self, batch: TrainBatch) -> float:
        """The algorithm's loss on ``batch`` without updating (to check that training lowers it)."""
        self.model.eval()
        batch = self._to_device(batch)
        logp, entropy = token_logprobs(self.model, batch.input_ids, batch.attention_mask, with_entropy=True)
        inputs = LossInputs(logprobs=logp, old_logprobs=batch.rollout_logprobs, advantages=batch.advantages,
                            loss_mask=batch.loss_mask, num_tokens=float(batch.loss_mask.sum()),
                            num_sequences=float(batch.size), max_tokens=self.cfg.rollout.max_tokens,
                            entropy=entropy)
        return float(self.spec.loss(inputs, self.algo)[0])

    def save(self, directory: str) -> str:
        from transformers import AutoTokenizer

        out = Path(directory)
        self.model.save_pretrained(out, safe_serialization=True)
        AutoTokenizer.from_pretrained(self.cfg.model.resolved_path()).save_pretrained(out)
        return str(out)

    def get_version(self) -> int:
        return self.version
