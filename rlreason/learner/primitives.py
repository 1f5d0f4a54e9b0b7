"""The learner's side of the primitive API (``rlreason.api``): ``forward_backward``, ``forward`` and ``optim_step``
as separate calls, so a user's own loop decides what a step is.

They run the same code as ``train_step``: ``_accumulate`` (micro-batches by length, every loss normalised by the
call's counts, gradients accumulated) and ``_apply_gradients`` (the ranks' gradients summed, clipped, one optimizer
step). Gradients accumulate over ``forward_backward`` calls until ``optim_step``. A user's mistake (a loss that
raises, returns no scalar or a non-finite value; an optimizer step without gradients) never raises here: every rank
comes to the same verdict through a collective and returns ``{"error": ...}``, the gradients stay as they were before
the call, and the learner group (which stops every rank when one raises) stays up.
"""

from __future__ import annotations

import math

import torch

from rlreason.learner.prepared import Prepared
from rlreason.types import DatumBatch


class Primitives:
    """Mixed into ``Learner`` (needs ``_accumulate``, ``_apply_gradients``, ``policy``, ``optimizer``, ``dp``)."""

    _pending: list | None = None  # log-ratios of the forward_backward calls since the last optimizer step

    def forward_backward(self, data: DatumBatch, loss_fn, backward: bool = True) -> dict:
        """The loss of ``data`` under ``loss_fn`` (``LossInputs`` -> loss or (loss, metrics)); with ``backward``
        its gradient is added to the accumulated one. Returns {"loss", "metrics", "logprobs" [B, T]} or
        {"error"}."""
        batch = self._to_device(data.batch)
        rows = torch.arange(batch.size, device=self.device)
        keep = torch.zeros_like(batch.loss_mask)
        saved = [None if p.grad is None else p.grad.clone() for p in self.params]
        failures: list[str] = []
        prep = self._primitive_prep(data, batch, getattr(loss_fn, "needs_reference", False))
        self.model.train()
        with torch.enable_grad() if backward else torch.no_grad():
            sums, ratios = self._accumulate(batch, rows, prep, _guarded(loss_fn, failures, backward), keep,
                                            backward=backward)
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
            return {"error": f"{error}; nothing was accumulated, the run is unchanged"}
        if backward:
            self._pending = (self._pending or []) + ratios
        return {"loss": sums.get("loss", 0.0), "metrics": sums, "logprobs": logprobs}

    def _primitive_prep(self, data: DatumBatch, batch, needs_reference: bool) -> Prepared:
        ref = None
        if needs_reference:
            with torch.no_grad(), self.policy.reference() as reference:
                self.model.eval()
                ref, _ = self._chunked(batch, reference)
        def dev(x):
            return None if x is None else x.to(self.device)
        return Prepared(dev(data.advantages), dev(data.old_logprobs), ref, weights=dev(data.weights))

    def optim_step(self, lr: float | None = None, beta1: float | None = None, beta2: float | None = None,
                   eps: float | None = None, weight_decay: float | None = None,
                   max_grad_norm: float | None = -1.0) -> dict:
        """One AdamW step on the accumulated gradient. None: the recipe's value (``lr``: its schedule, which then
        advances); ``max_grad_norm``: -1 the recipe's, None no clipping. Returns metrics and the new version, or
        {"error"} (no gradient; a non-finite gradient, the update skipped)."""
        if not any(p.grad is not None for p in self.params) and not self.dp.world > 1:
            return {"error": "optim_step before any forward_backward: there is no gradient to apply"}
        for group in self.optimizer.param_groups:
            if lr is not None:
                group["lr"] = lr
            if beta1 is not None or beta2 is not None:
                group["betas"] = (group["betas"][0] if beta1 is None else beta1,
                                  group["betas"][1] if beta2 is None else beta2)
            if eps is not None:
                group["eps"] = eps
            if weight_decay is not None:
                group["weight_decay"] = weight_decay
        clip = self.cfg.train.max_grad_norm if max_grad_norm == -1.0 else max_grad_norm
        before = self.nonfinite_steps
        try:
            sums = self._apply_gradients({}, self._pending or [], clip, scheduled=lr is None)
        except Exception as e:  # noqa: BLE001 - too many non-finite updates in a row: said, not raised
            self.optimizer.zero_grad(set_to_none=True)
            self._pending = None
            return {"error": str(e)}
        self._pending = None
        if self.nonfinite_steps > before:
            return {"error": f"the gradient is not finite (norm {sums['grad_norm']}): the update was skipped, the "
                             "weights and optimizer are unchanged"}
        self.version += 1
        return {**sums, "version": self.version}


def _guarded(loss_fn, failures: list[str], backward: bool):
    """``loss_fn`` whose failures are recorded instead of raised (a zero loss stands in, so the micro-batch loop
    and the ranks' collectives go on)."""
    def call(inputs):
        try:
            out = loss_fn(inputs)
            loss, metrics = out if isinstance(out, tuple) else (out, {})
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise TypeError(f"a loss function returns a scalar tensor (or (tensor, metrics)), got {type(loss)}"
                                f"{'' if not isinstance(loss, torch.Tensor) else f' of shape {tuple(loss.shape)}'}")
            if backward and not loss.requires_grad:
                raise ValueError("the loss does not depend on inputs.logprobs: there is no gradient")
            return loss, {str(k): float(v) for k, v in metrics.items()}
        except Exception as e:  # noqa: BLE001 - a user's loss: reported to the caller in one line
            failures.append(f"the loss function raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return inputs.logprobs.sum() * 0.0, {}
    return call
