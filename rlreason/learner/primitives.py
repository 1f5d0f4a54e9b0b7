"""The learner's side of the primitive API (``rlreason.api``): ``forward_backward`` and ``optim_step`` as separate
calls, so a user's own loop decides what a step is.

They run the same code as ``train_step``: ``_accumulate`` (micro-batches by length, every loss normalised by the
call's counts) and ``_apply_gradients`` (the ranks' gradients summed, clipped, one optimizer step). Gradients
accumulate over ``forward_backward`` calls until ``optim_step``. A user's mistake (a loss that cannot be loaded here,
raises, in its forward or its backward, returns no scalar or a non-finite value; an optimizer step without a
gradient) never raises: every rank comes to the same verdict through a collective and answers
``PrimitiveResult(error=...)``, the gradients are what they were before the call, and the learner group (which stops
every rank when one raises) stays up.
"""

from __future__ import annotations

import math

import torch

from rlreason.learner.prepared import Prepared
from rlreason.types import DatumBatch, PrimitiveResult

UNCHANGED = "; nothing was accumulated, the run is unchanged"


class Primitives:
    """Mixed into ``Learner`` (needs ``_accumulate``, ``_apply_gradients``, ``policy``, ``optimizer``, ``dp``)."""

    _pending: list | None = None  # log-ratios of the forward_backward calls since the last optimizer step

    def forward_backward(self, data: DatumBatch, loss: bytes, backward: bool = True) -> PrimitiveResult:
        """The loss of ``data`` under ``loss`` (a cloudpickled function ``LossInputs`` -> loss or (loss, metrics),
        loaded here, where its failure is the caller's error); with ``backward`` its gradient is added to the
        accumulated one. ``logprobs``: the learner's, [B, T]."""
        failures: list[str] = []
        loss_fn = _loaded(loss, failures)
        batch = self._to_device(data.batch)
        rows = torch.arange(batch.size, device=self.device)
        keep = torch.zeros_like(batch.loss_mask)
        saved = [None if p.grad is None else p.grad.clone() for p in self.params] if backward else []
        prep = self._primitive_prep(data, batch, getattr(loss_fn, "needs_reference", False), failures)
        self.model.train(backward)
        with torch.enable_grad() if backward else torch.no_grad():
            sums, ratios = self._accumulate(batch, rows, prep, _guarded(loss_fn, failures, backward), keep,
                                            backward=False)  # (the guard runs each backward)
        failed = self.dp.sum_metrics({"failed": float(len(failures))})["failed"]
        logprobs = self.dp.sum(keep).cpu()
        error = None
        if failed:
            error = failures[0] if failures else "the loss function failed on another learner"
        elif not math.isfinite(sums.get("loss", 0.0)):
            error = (f"the loss is {sums['loss']}: not finite (check the advantages, weights and logprobs for "
                     "NaN/inf, or the loss function)")
        if error is not None:
            for p, g in zip(self.params, saved):
                p.grad = g
            return PrimitiveResult(error=error + (UNCHANGED if backward else ""), version=self.version)
        if backward:
            self._pending = (self._pending or []) + ratios
        return PrimitiveResult(sums.get("loss", 0.0), sums, logprobs, self.version)

    def _primitive_prep(self, data: DatumBatch, batch, needs_reference: bool, failures: list[str]) -> Prepared:
        """The call's own advantages, weights and old logprobs; the reference model's logprobs when the loss
        needs them (a full-weight policy keeps a reference only when the recipe's algorithm has a KL term)."""
        ref = None
        if needs_reference:
            with torch.no_grad(), self.policy.reference() as reference:
                if reference is None:
                    failures.append("the loss needs a reference model (a KL term) and this run keeps none: train "
                                    "a LoRA adapter (the base model is the reference) or use a recipe whose "
                                    "algorithm has kl_coef > 0")
                else:
                    self.model.eval()
                    ref, _ = self._chunked(batch, reference)

        def dev(x):
            return None if x is None else x.to(self.device)
        return Prepared(dev(data.advantages), dev(data.old_logprobs), ref, weights=dev(data.weights))

    def optim_step(self, lr: float | None = None, beta1: float | None = None, beta2: float | None = None,
                   eps: float | None = None, weight_decay: float | None = None,
                   max_grad_norm: float | None = None) -> PrimitiveResult:
        """One AdamW step on the accumulated gradient. None: the recipe's value for this step (``lr``: its
        schedule, which then advances; ``max_grad_norm``: ``train.max_grad_norm``); ``max_grad_norm`` 0: no
        clipping. An error (no gradient; a non-finite gradient, the update skipped) leaves the weights as they
        were."""
        if self._pending is None:  # (the same on every rank: they all ran the same forward_backward calls)
            return PrimitiveResult(error="optim_step before any forward_backward: there is no gradient to apply",
                                   version=self.version)
        t = self.cfg.train
        sched = self.scheduler  # (each group's scheduled rate now: a continual phase's groups included)
        rates = [base * f(sched.last_epoch) for base, f in zip(sched.base_lrs, sched.lr_lambdas)]
        for group, scheduled in zip(self.optimizer.param_groups, rates):
            group["lr"] = scheduled if lr is None else lr
            group["betas"] = (t.beta1 if beta1 is None else beta1, t.beta2 if beta2 is None else beta2)
            group["eps"] = 1e-8 if eps is None else eps  # (AdamW's default, as the learner builds it)
            group["weight_decay"] = t.weight_decay if weight_decay is None else weight_decay
        clip = t.max_grad_norm if max_grad_norm is None else (max_grad_norm or None)
        before, ratios, self._pending = self.nonfinite_steps, self._pending, None
        try:
            sums = self._apply_gradients({}, ratios, clip, scheduled=lr is None)
        except Exception as e:  # noqa: BLE001 - too many non-finite updates in a row: said, not raised
            self.optimizer.zero_grad(set_to_none=True)
            return PrimitiveResult(error=str(e), version=self.version)
        if self.nonfinite_steps > before:
            return PrimitiveResult(error=f"the gradient is not finite (norm {sums['grad_norm']}): the update was "
                                         "skipped, the weights and optimizer are unchanged", version=self.version)
        self.version += 1
        return PrimitiveResult(metrics=sums, version=self.version)

    def forget_optimizer(self) -> None:
        """A fresh optimizer state (Adam's moments), for a load of the weights alone."""
        self.optimizer.state.clear()

    def advance_version(self, above: int) -> int:
        """Number the policy above ``above`` (the newest version the engines were given), so a restored state
        is served as new weights: an engine ignores a push not newer than what it serves (a revived worker's)."""
        self.version = max(self.version, above + 1)
        return self.version


def _loaded(blob: bytes, failures: list[str]):
    """The caller's loss function, unpickled here (a module the learners cannot import is the caller's error)."""
    import cloudpickle

    try:
        return cloudpickle.loads(blob)
    except Exception as e:  # noqa: BLE001
        failures.append(f"the loss function cannot be loaded in the learners ({type(e).__name__}: "
                        f"{str(e)[:200]}): define it in your script or in a module the learners can import")
        return lambda inputs: inputs.logprobs.sum() * 0.0


def _guarded(loss_fn, failures: list[str], backward: bool):
    """``loss_fn`` with its backward, whose failures are recorded instead of raised (a zero loss stands in, so
    the micro-batch loop and the ranks' collectives go on)."""
    def call(inputs):
        if failures:  # (one failure is enough: the rest of the call only keeps the ranks in step)
            return inputs.logprobs.detach().sum() * 0.0, {}
        try:
            out = loss_fn(inputs)
            loss, metrics = out if isinstance(out, tuple) else (out, {})
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise TypeError(f"a loss function returns a scalar tensor (or (tensor, metrics)), got {type(loss)}"
                                f"{'' if not isinstance(loss, torch.Tensor) else f' of shape {tuple(loss.shape)}'}")
            if backward and not loss.requires_grad:
                raise ValueError("the loss does not depend on inputs.logprobs: there is no gradient")
            if backward:
                loss.backward()
            return loss.detach(), {str(k): float(v) for k, v in metrics.items()}
        except Exception as e:  # noqa: BLE001 - a user's loss: reported to the caller in one line
            text = str(e).strip().splitlines()
            failures.append(f"the loss function raised {type(e).__name__}: {text[0][:300] if text else ''}")
            return inputs.logprobs.detach().sum() * 0.0, {}
    return call
