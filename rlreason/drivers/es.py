"""``algorithm.name: es``: each step is a generation. Its own driver over the shared stages (problem stream, scorer,
weight push), selected by the algorithm's registered ``driver``; the run directory, evaluations, checkpoints and
summary are ``rlreason train``'s.

A generation: draw the members' (seed, sign) pairs from (run seed, generation); split them over the rollout
workers, each of which builds its members from the seeds around the adapter it serves and samples all of them on
the same problems in one batch; score every completion; a member's reward is its mean score; the learner moves the
mean adapter from the seeds and the normalised rewards; the new mean is pushed. Only seeds, scalars and the mean
adapter (one push, as any LoRA run makes) travel between processes. The best members seen are kept in an archive
(``es_archive.json``) and written as adapter directories (``elites/``), usable as ``model.adapter`` or in
``rlreason eval``.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rlreason.algorithms.es import member_seeds, normalized
from rlreason.controller import (Context, gathered, push_weights, reseed_engines, sampling_spec, score, step_seed,
                                 take_fitting)
from rlreason.evaluation.heldout import evaluate
from rlreason.rollout.recovery import on_workers


@dataclass(frozen=True)
class Elite:
    generation: int
    seed: int
    sign: int
    sigma: float
    reward: float
    accuracy: float
    path: str
    heldout: dict = field(default_factory=dict)  # its held-out metrics, once evaluated (``es_best/*``)


class Archive:
    """The ``size`` best members seen (by reward, earlier first on ties), each saved as an adapter."""

    def __init__(self, size: int, run_dir: Path) -> None:
        self.size, self.run_dir, self.elites = size, run_dir, []
        self._tensors: dict[str, dict] = {}  # path -> the tensors of elites admitted by this process
        saved = run_dir / "es_archive.json"
        if saved.is_file():  # a resumed run keeps its archive
            self.elites = [Elite(**e) for e in json.loads(saved.read_text())]

    def forget_from(self, generation: int) -> None:
        """Drop elites of ``generation`` and later (a resumed run generates them again)."""
        for elite in [e for e in self.elites if e.generation >= generation]:
            _remove(Path(elite.path))
        self.elites = [e for e in self.elites if e.generation < generation]

    def consider(self, ctx: Context, generation: int, members, rewards, accuracies, sigma: float, rank: int) -> None:
        import ray

        if self.size == 0:
            return
        for (seed, sign), reward, acc in sorted(zip(members, rewards, accuracies), key=lambda x: -x[1]):
            if len(self.elites) >= self.size and reward <= self.elites[-1].reward:
                break
            path = (self.run_dir / "elites" / f"g{generation}-s{seed}{'+' if sign > 0 else '-'}").resolve()
            if any(e.path == str(path) for e in self.elites):
                continue
            self._tensors[str(path)] = ray.get(ctx.learner.es_save_member.remote(seed, sign, sigma, rank, str(path)))
            self.elites.append(Elite(generation, seed, sign, sigma, reward, acc, str(path)))
            self.elites.sort(key=lambda e: (-e.reward, e.generation))
            for dropped in self.elites[self.size:]:
                _remove(Path(dropped.path))
                self._tensors.pop(dropped.path, None)
            self.elites = self.elites[:self.size]
        self.save()

    def tensors(self, elite: Elite) -> dict | None:
        """The elite's adapter tensors: kept since it was admitted, else (a resumed run) read from its directory;
        None when that directory is not on this machine."""
        if elite.path not in self._tensors:
            file = Path(elite.path) / "adapter_model.safetensors"
            if not file.is_file():
                return None
            from safetensors.torch import load_file

            self._tensors[elite.path] = load_file(str(file))
        return self._tensors[elite.path]

    def save(self) -> None:
        tmp = self.run_dir / "es_archive.json.tmp"
        tmp.write_text(json.dumps([asdict(e) for e in self.elites], indent=2))
        tmp.replace(self.run_dir / "es_archive.json")


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def common_seed(cfg, step: int) -> int | None:
    """The base of generation ``step``'s common sampling seeds (``algorithm.common_noise``): one for all workers,
    so members served by different workers share their noise, and a function of (run seed, generation) only, so a
    resumed run samples as the uninterrupted one would."""
    return step_seed(cfg.seed, step, 0, "es-common") % 2**31 if cfg.algorithm.common_noise else None


class ESSteps:
    """One generation per step (``rlreason.drivers.train`` drives it like the gradient drivers)."""

    def __init__(self, ctx: Context, stream, console=None) -> None:
        self.ctx, self.stream = ctx, stream
        self.archive = Archive(ctx.cfg.algorithm.elites, ctx.cfg.run_dir)
        self.pushed = False

    def position(self) -> tuple[int, int]:
        return self.stream.drawn, self.ctx.too_long

    def __call__(self, step: int) -> dict[str, float]:
        import ray

        ctx, cfg, a = self.ctx, self.ctx.cfg, self.ctx.cfg.algorithm
        start = time.perf_counter()
        if not self.pushed:  # the engines build members around the learner's mean: they must serve it first
            push_weights(ctx)
            self.pushed = True
            self.archive.forget_from(step)  # (a resumed run: what the interrupted one kept after its checkpoint)
        sigma, lr = a.sigma * a.sigma_decay ** (step - 1), a.lr * a.lr_decay ** (step - 1)
        members = member_seeds(cfg.seed, step, a.population, a.antithetic)
        problems = take_fitting(ctx, self.stream, cfg.rollout.prompts_per_step)
        reseed_engines(ctx, step)
        generated, gen_time = self._generate(problems, members, sigma, step)
        scored = [score(ctx, list(zip(problems, groups))) for groups in generated]
        rewards = [statistics.fmean(s for g in groups for s in g.rewards) for groups in scored]
        accuracies = [statistics.fmean(r.correct for g in groups for r in g.results) for groups in scored]
        weights = normalized(rewards, a.normalize)
        if not bool(weights.isfinite().all()):
            raise ValueError(f"es: non-finite member rewards {rewards} at generation {step}; check the verifier")
        self.archive.consider(ctx, step, members, rewards, accuracies, sigma, a.perturb_rank)
        stats = ray.get(ctx.learner.es_step.remote(members, weights.tolist(), lr, a.perturb_rank))
        sync = push_weights(ctx)
        lengths = [len(c.completion_ids) for groups in scored for g in groups for c in g.completions]
        tokens = sum(lengths)
        return {"reward_mean": statistics.fmean(rewards), "reward_std": statistics.pstdev(rewards),
                "accuracy": statistics.fmean(accuracies), "es_reward_max": max(rewards),
                "es_reward_min": min(rewards), "es_best_accuracy": max(accuracies), "es_sigma": sigma, "lr": lr,
                "es_population": float(len(members)), "rollout_tokens": float(tokens), "rollout_time_s": gen_time,
                "completion_len": statistics.fmean(lengths),
                "rollout_tokens_per_s": tokens / max(gen_time, 1e-9), **stats, **sync,
                "step_time_s": time.perf_counter() - start, **self._best_heldout(step)}

    def _best_heldout(self, step: int) -> dict[str, float]:
        """At evaluation steps (``eval.every``, and the last step when ``eval.after``): the held-out metrics of the
        best member kept so far (``es_best/<task>/accuracy``...), beside the mean's (the run's own evaluations).
        Not counted in the step's time."""
        cfg, elites = self.ctx.cfg, self.archive.elites
        last = step == cfg.train.steps
        due = (cfg.eval.every and step % cfg.eval.every == 0 and not last) or (cfg.eval.after and last)
        if not due or not elites:
            return {}
        if not elites[0].heldout:  # (an elite still the best at the next evaluation is not evaluated again)
            tensors = self.archive.tensors(elites[0])
            if tensors is None:
                return {}
            reseed_engines(self.ctx, step, "eval")  # the seeds the mean's evaluation at this step gets
            elites[0] = replace(elites[0], heldout=evaluate(self.ctx, adapter=tensors))
            self.archive.save()
        return {f"es_best/{k}": v for k, v in elites[0].heldout.items()}

    def _generate(self, problems, members, sigma: float, step: int):
        """Every member's groups (in member order), the members split over the workers; and the seconds taken."""
        cfg, n = self.ctx.cfg, len(self.ctx.workers)
        greedy = cfg.algorithm.greedy  # one answer per problem: greedy samples would all be the same
        sampling = sampling_spec(cfg, 1 if greedy else cfg.rollout.group_size, 0.0 if greedy else None)
        shares = {i: members[i::n] for i in range(n) if members[i::n]}
        common = common_seed(cfg, step)
        start = time.perf_counter()
        done = on_workers(self.ctx, {i: (lambda w, s=share, i=i: w.generate_population.remote(
            problems, sampling, s, sigma, cfg.algorithm.perturb_rank, f"g{step}w{i}", common))
            for i, share in shares.items()})
        return [groups for _, groups in gathered(members, n, done)], time.perf_counter() - start
