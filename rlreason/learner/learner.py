"""The learner: trains the policy on a ``TrainBatch`` with whatever loss the algorithm registered.

It never branches on the algorithm: it reads the config's capability flags (reference model, KL in the reward,
critic), computes the advantages with ``spec.advantage`` once per batch and calls ``spec.loss(LossInputs, cfg)``
per micro-batch.
One ``train_step`` = ``epochs`` passes over ``minibatches`` optimizer steps, each accumulated over micro-batches
of ``micro_batch_size`` sequences. Runs as a Ray actor in training and in-process in tests.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from rlreason.process_info import ActorInfo
from rlreason.algorithms import LossInputs, get_algorithm
from rlreason.algorithms.common import effective_sample_size, kl_penalty, masked_mean
from rlreason.batching import advantage_inputs, sample_advantages, step_counts
from rlreason.recipe import RunConfig
from rlreason.learner.es_mean import ESMean
from rlreason.learner.prepared import Prepared
from rlreason.learner.primitives import Primitives
from rlreason.learner.attention import fit_attention
from rlreason.learner.critic import Critic
from rlreason.learner.data_parallel import DataParallel
from rlreason.learner.logprobs import autocast, policy_forward, token_logprobs
from rlreason.learner.phased_lora import PhasedLoraPolicy
from rlreason.learner.policy import FullPolicy, LoraPolicy
from rlreason.learner.shared_prefix import Plan, prompt_lengths, worth_it
from rlreason.registry import load_plugins
from rlreason.rollout.weight_channel import WeightSender
from rlreason.types import TrainBatch, TrainStats, WeightUpdate


def by_length(batch: TrainBatch, rows: torch.Tensor) -> torch.Tensor:
    """``rows`` shortest first: consecutive micro-batches then hold rows of similar length, each trimmed to its
    own longest (rows are right-padded), so little compute goes to padding (and rows of one group, which tend to
    have similar lengths, often share a micro-batch and its prompt pass). The step's loss is a sum over
    micro-batches normalised by the whole step's counts: the order changes nothing else."""
    return rows[torch.argsort(batch.attention_mask[rows].sum(1), stable=True)]


def _width(batch: TrainBatch, rows: torch.Tensor) -> int:
    return int(batch.attention_mask[rows].sum(1).max())


class NonFiniteError(RuntimeError):
    """Too many updates in a row were skipped for non-finite numbers; the message says what to try."""


def build_policy(cfg: RunConfig, device: torch.device):
    """The policy kind the recipe asks for: full weights, a LoRA adapter, or one adapter per continual phase."""
    if cfg.continual.adapters == "per_phase":
        return PhasedLoraPolicy(cfg, device)
    return (LoraPolicy if cfg.model.uses_lora else FullPolicy)(cfg, device)

class Learner(ActorInfo, WeightSender, ESMean, Primitives):
    def __init__(self, cfg: RunConfig, threads: int | None = None, rank: int = 0, world: int = 1) -> None:
        """``rank``/``world``: this learner's place in a data-parallel group of ``world`` (``join`` connects it)."""
        load_plugins()
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        self.dp = DataParallel(rank, world)
        self.algo = cfg.algorithm
        self.spec = get_algorithm(self.algo.name)
        self.device = torch.device("cuda" if cfg.train.gpus_per_learner > 0 else "cpu")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("train.gpus_per_learner > 0 but this learner sees no CUDA device")
        self.policy = build_policy(cfg, self.device)  # full weights or a LoRA adapter: the learner can't tell
        self._auto_attention = cfg.model.attention == "auto" and self.device.type == "cpu"  # kernel per micro-batch
        self.model = self.policy.model
        self.critic = None
        params = self.policy.trainable()
        if self.algo.needs_value_model:
            if self.spec.value_targets is None:
                raise ValueError(f"algorithm {self.algo.name!r} needs a value model but registers no value_targets")
            self.critic = Critic(self.model, self.algo.critic, self.policy.path).to(self.device)
            params += [p for p in self.critic.parameters() if p.requires_grad]
        t = cfg.train
        # fused: one kernel over all parameters (107M model on 2 cores: 0.04 s a step instead of 0.26)
        self.optimizer = torch.optim.AdamW(params, lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay,
                                           fused=True)
        warmup = max(t.warmup_steps, 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup))
        self.params = params
        self.version = 0
        self.nonfinite_steps, self._nonfinite_in_a_row = 0, 0
        self._export_bytes = 0

    def join(self, address: str, port: int) -> None:
        """Connect to the other learners of the group (every rank at once) and start from rank 0's values."""
        whole_gpus = self.device.type == "cuda" and self.cfg.train.gpus_per_learner >= 1
        self.dp.join(address, port, "nccl" if whole_gpus else "gloo")  # (NCCL refuses two ranks on one GPU)
        self.dp.broadcast([*self.params, *self.model.buffers()])

    def rendezvous(self) -> tuple[str, int]:
        """Where the group meets (rank 0 is asked): this node's address and a port free on it."""
        import ray

        from rlreason.learner.group import free_port

        return ray.util.get_node_ip_address(), free_port()

    # -- training -------------------------------------------------------------------------------------------
    def train_step(self, batch: TrainBatch) -> TrainStats:
        start = time.perf_counter()
        batch = self._to_device(batch)
        t = self.cfg.train
        steps_per_batch = t.epochs * t.minibatches
        prep = self.prepare(batch, need_old=steps_per_batch > 1)
        self.model.train()
        metrics: dict[str, list[float]] = {}
        shuffle = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.version)  # same on every rank
        for _ in range(t.epochs):
            order = torch.randperm(batch.size, generator=shuffle) if steps_per_batch > 1 else torch.arange(batch.size)
            for rows in order.chunk(t.minibatches):
                for key, value in self._optimizer_step(batch, rows.to(self.device), prep).items():
                    metrics.setdefault(key, []).append(value)
        self.version += 1
        out = {k: sum(v) / len(v) for k, v in metrics.items()}
        out.update(prep.metrics or {}, **self.policy.weight_metrics(), learner_time_s=time.perf_counter() - start)
        return TrainStats(version=self.version, metrics=out)

    def _plan(self, batch: TrainBatch, rows: torch.Tensor, width: int) -> Plan | None:
        """How ``rows`` share their prompts, when the recipe allows it and it saves enough."""
        if not self.cfg.train.shared_prefix:
            return None
        attn = batch.attention_mask[rows, :width]
        plan = Plan(batch.input_ids[rows, :width], attn, batch.group_ids[rows],
                    prompt_lengths(batch.loss_mask[rows, :width], attn))
        return plan if worth_it(plan) else None

    def _forward(self, ids: torch.Tensor, attn: torch.Tensor, with_entropy: bool = True, model=None, plan=None):
        """Policy (or ``model``) forward under the recipe's precision; critic values when there is a critic and
        this is the policy's own forward."""
        net = self.model if model is None else model
        if self._auto_attention:
            fit_attention(net, *ids.shape)
        with autocast(self.device, self.cfg.model.dtype):
            out = policy_forward(net, ids, attn, with_entropy, self.cfg.train.fp32_logits, plan)
            values = None
            if self.critic is not None and model is None:
                values = self.critic(ids, attn, out.hidden)
        return out, values

    def _loss_inputs(self, batch: TrainBatch, micro: torch.Tensor, prep: Prepared, counts: dict) -> LossInputs:
        width = _width(batch, micro)  # the micro-batch's own longest row: no compute on the batch's padding

        def pick(x):
            return None if x is None else x[micro, :width]

        out, values = self._forward(pick(batch.input_ids), pick(batch.attention_mask),
                                    plan=self._plan(batch, micro, width))
        return LossInputs(
            logprobs=out.logprobs, old_logprobs=out.logprobs.detach() if prep.old is None else pick(prep.old),
            advantages=pick(prep.advantages), loss_mask=pick(batch.loss_mask), entropy=out.entropy,
            max_tokens=self.cfg.rollout.max_tokens, ref_logprobs=pick(prep.ref),
            rollout_logprobs=pick(batch.rollout_logprobs), group_ids=batch.group_ids[micro],
            values=values, old_values=pick(prep.old_values), returns=pick(prep.returns),
            group_tokens=counts["group_tokens"][micro], num_tokens=counts["num_tokens"],
            num_sequences=counts["num_sequences"], num_groups=counts["num_groups"], weights=pick(prep.weights))

    def _optimizer_step(self, batch: TrainBatch, rows: torch.Tensor, prep: Prepared) -> dict[str, float]:
        sums, ratios = self._accumulate(batch, rows, prep, lambda inputs: self.spec.loss(inputs, self.algo))
        return self._apply_gradients(sums, ratios, self.cfg.train.max_grad_norm)

    def _accumulate(self, batch: TrainBatch, rows: torch.Tensor, prep: Prepared, loss_fn,
                    keep: torch.Tensor | None = None, backward: bool = True) -> tuple[dict[str, float], list]:
        """Forward and backward ``rows`` in micro-batches, gradients accumulated: ``loss_fn(LossInputs)`` ->
        (loss, metrics). Returns this rank's metric sums (summed over the ranks) and the log-ratios learner /
        engine; ``keep`` [B, T]: filled with the rows' logprobs."""
        counts = step_counts(batch, rows)
        sums: dict[str, float] = {}
        ratios = []  # per micro-batch: [B, T] log-ratios learner / engine, for one ESS over the optimizer step
        order = by_length(batch, rows)
        for micro in self.dp.share(order).split(self.cfg.train.micro_batch_size):  # this rank's rows
            if len(micro) == 0:  # fewer rows than ranks: this one has none (it still joins every collective)
                continue
            inputs = self._loss_inputs(batch, micro, prep, counts)
            loss, algo_metrics = loss_fn(inputs)
            if backward:
                loss.backward()
            m = inputs.loss_mask
            if keep is not None:
                keep[micro, :m.shape[1]] = inputs.logprobs.detach().float()
            share = float(m.sum()) / max(counts["num_tokens"], 1.0)
            log_ratio = inputs.old_logprobs - inputs.rollout_logprobs  # learner vs the engine that sampled
            # Each micro-batch loss is normalised by the whole step's counts, so their sum is the step's loss.
            step_metrics = {"loss": loss.item(), "entropy": masked_mean(inputs.entropy.detach(), m),
                            "logprob_mismatch": masked_mean(log_ratio.abs(), m), **algo_metrics}
            ratios.append((log_ratio.detach() * m, m))
            if inputs.ref_logprobs is not None:  # forgetting is predicted by the KL to the base model
                step_metrics["kl_to_ref"] = masked_mean(kl_penalty(inputs.logprobs.detach(), inputs.ref_logprobs,
                                                                   "k3"), m)
            for k, v in step_metrics.items():
                sums[k] = sums.get(k, 0.0) + (v if k == "loss" else v * share)
        return self.dp.sum_metrics(sums), ratios

    def _apply_gradients(self, sums: dict[str, float], ratios: list, max_grad_norm: float | None,
                         scheduled: bool = True) -> dict[str, float]:
        """Sum the ranks' gradients, clip them (``max_grad_norm``; None: no clipping), take the optimizer step
        (skipped, and counted, when the loss or the gradient is not finite); ``scheduled``: the LR schedule
        advances."""
        self.dp.sum_gradients(self.params)
        sums.update(self.policy.gradient_metrics(), **effective_sample_size(*self.dp.gather(ratios)))
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, math.inf if max_grad_norm is None else max_grad_norm)
        sums["grad_norm"] = float(grad_norm)
        if not (math.isfinite(sums.get("loss", 0.0)) and math.isfinite(sums["grad_norm"])):
            self._skip_nonfinite(sums)
        else:
            self._nonfinite_in_a_row = 0
            self.optimizer.step()
            if scheduled:
                self.scheduler.step()
            sums.update(self.policy.after_step(self.optimizer))
        self.optimizer.zero_grad(set_to_none=True)
        sums["lr"] = self.optimizer.param_groups[0]["lr"] if not scheduled else self.scheduler.get_last_lr()[0]
        sums["nonfinite_steps"] = float(self.nonfinite_steps)
        return sums

    def _skip_nonfinite(self, sums: dict) -> None:
        """A non-finite loss or gradient: no update at all (weights, optimizer and schedule unchanged), counted;
        too many in a row stop the run with what to try."""
        self.nonfinite_steps += 1
        self._nonfinite_in_a_row += 1
        limit = self.cfg.train.max_nonfinite_in_a_row
        if self._nonfinite_in_a_row >= limit:
            raise NonFiniteError(
                f"{self._nonfinite_in_a_row} updates in a row had a non-finite loss or gradient (loss "
                f"{sums['loss']}, grad norm {sums['grad_norm']}); try a lower train.lr or train.max_grad_norm, "
                "train.fp32_logits=true, model.dtype=float32, or check the verifier's rewards for NaN/inf "
                f"(limit: train.max_nonfinite_in_a_row={limit})")

    @torch.no_grad()
    def prepare(self, batch: TrainBatch, need_old: bool) -> Prepared:
        """Frozen logprobs/values the config asks for, then the algorithm's advantages (and critic targets).

        Old logprobs are computed when several optimizer steps share the batch or the KL sits in the reward."""
        self.model.eval()
        algo, old, old_values, ref, kl = self.algo, None, None, None, None
        if need_old or algo.kl_in_reward or self.critic is not None:
            old, old_values = self._chunked(batch)
        every = self.cfg.train.kl_to_ref_every
        diagnostic = self.policy.free_reference and every > 0 and self.version % every == 0
        if algo.needs_reference or diagnostic:
            with self.policy.reference() as reference:
                ref, _ = self._chunked(batch, reference)
        metrics = {}
        if algo.kl_in_reward:
            kl = kl_penalty(old, ref, getattr(algo, "kl_estimator", "k1"))
            metrics["kl_in_reward"] = masked_mean(kl, batch.loss_mask)
        inputs = advantage_inputs(batch, algo, kl=kl, values=old_values)
        advantages = sample_advantages(batch, inputs, self.spec.advantage, algo).float()
        returns = self.spec.value_targets(inputs, algo) if self.critic is not None else None
        metrics.update(advantage_abs_mean=masked_mean(advantages.abs(), batch.loss_mask))
        if not (need_old or algo.kl_in_reward):
            old = None  # one step per batch: the current logprobs, detached, are the old ones
        return Prepared(advantages, old, ref, old_values, returns, metrics)

    def _chunked(self, batch: TrainBatch, model=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logprobs (and critic values) over the batch in micro-batches: the policy's, or ``model``'s."""
        logps = torch.zeros_like(batch.loss_mask)
        values = torch.zeros_like(logps) if self.critic is not None and model is None else None
        everyone = torch.arange(batch.size, device=self.device)
        mine = self.dp.share(by_length(batch, everyone))
        for rows in mine.split(self.cfg.train.micro_batch_size):
            if len(rows) == 0:
                continue
            width = _width(batch, rows)
            out, v = self._forward(batch.input_ids[rows, :width], batch.attention_mask[rows, :width], False, model,
                                   self._plan(batch, rows, width))
            logps[rows, :width] = out.logprobs.float()  # (bfloat16 under autocast without fp32 logits)
            if v is not None:
                values[rows, :width] = v.float()
        return self.dp.sum(logps), None if values is None else self.dp.sum(values)

    def _to_device(self, batch: TrainBatch) -> TrainBatch:
        if self.device.type == "cpu":
            return batch
        return TrainBatch(**{k: None if v is None else v.to(self.device) for k, v in vars(batch).items()})

    # -- weights --------------------------------------------------------------------------------------------
    def export_weights(self) -> WeightUpdate:
        """What the rollout engines need to serve the current policy (full weights or the adapter), on CPU."""
        update = self.policy.export(self.version)
        self._export_bytes = update.nbytes
        return update

    def set_anchor(self) -> None:
        """From now on the KL reference is the policy as it is now (continual learning, between phases)."""
        self.policy.set_anchor()

    def new_phase(self) -> None:
        """A continual run entered a new phase: parameters the policy starts training now (one adapter per phase)
        join the optimizer at the current learning rate and follow the same schedule."""
        fresh = self.policy.new_phase()
        if not fresh:
            return
        self.dp.broadcast(fresh)  # (its initialisation drew from each rank's own RNG)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.add_param_group({"params": fresh, "lr": lr, "initial_lr": self.cfg.train.lr})
        self.scheduler.base_lrs.append(self.cfg.train.lr)
        self.scheduler.lr_lambdas.append(self.scheduler.lr_lambdas[0])
        self.params += fresh

    def save_checkpoint(self, directory: str) -> str:
        from rlreason.learner.checkpointing import save_learner

        return str(save_learner(self, Path(directory)))

    def load_checkpoint(self, directory: str) -> int:
        """Restore a checkpoint's state; returns the policy version it was saved at."""
        from rlreason.learner.checkpointing import load_learner

        load_learner(self, Path(directory))
        self.optimizer.zero_grad(set_to_none=True)  # (a primitive loop's accumulated gradient belongs to before)
        self._pending = None
        return self.version

    def last_export_bytes(self) -> int:
        return self._export_bytes

    @torch.no_grad()
    def sequence_logprobs(self, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
        self.model.eval()
        ids = torch.tensor([prompt_ids + completion_ids], device=self.device)
        logp, _ = token_logprobs(self.model, ids, torch.ones_like(ids))
        return logp[0, len(prompt_ids):].tolist()

    @torch.no_grad()
    def batch_loss(self, batch: TrainBatch) -> float:
        """The algorithm's loss on ``batch`` without updating (to check that training lowers it); the old policy
        is the rollout engine's."""
        batch = self._to_device(batch)
        prep = self.prepare(batch, need_old=False)
        prep = Prepared(prep.advantages, batch.rollout_logprobs, prep.ref, prep.old_values, prep.returns)
        rows = torch.arange(batch.size, device=self.device)
        return float(self.spec.loss(self._loss_inputs(batch, rows, prep, step_counts(batch, rows)), self.algo)[0])

    def save(self, directory: str) -> str:
        from transformers import AutoTokenizer

        out = Path(directory)
        self.policy.save(out)
        AutoTokenizer.from_pretrained(self.cfg.model.resolved_path()).save_pretrained(out)
        return str(out)

    def get_version(self) -> int:
        return self.version
