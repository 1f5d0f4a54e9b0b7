"""ScaleRL's compute-performance curve (Khatri et al., arXiv 2510.13786):

    R(C) = R0 + (A - R0) / (1 + (C_mid / C) ** B)

R is held-out accuracy after compute C (here: generated tokens), R0 the accuracy before training, A the
asymptote (the ceiling the recipe approaches), B the efficiency exponent (how sharply it gets there), C_mid the
compute at which half the gain is made. R is linear in A for fixed (B, C_mid), so the fit is a grid over B and
log C_mid with A solved in closed form (least squares, A clipped to [R0, 1]): no optimiser to diverge on a
handful of noisy points. Uncertainty: the same fit on seeds resampled with replacement (bootstrap).
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass

MIN_POINTS = 4  # distinct compute values (beyond C = 0) needed before a 3-parameter fit means anything


@dataclass(frozen=True)
class Fit:
    A: float
    B: float
    C_mid: float
    R0: float
    rmse: float


def sigmoid_gain(c: float, b: float, c_mid: float) -> float:
    return 0.0 if c <= 0 else 1.0 / (1.0 + (c_mid / c) ** b)


def fit_curve(points: list[tuple[float, float]], r0: float) -> Fit | None:
    """Least-squares fit of (compute, accuracy) points (C > 0); None with too few distinct compute values."""
    points = [(c, r) for c, r in points if c > 0]
    if len({c for c, _ in points}) < MIN_POINTS:
        return None
    cs = [c for c, _ in points]
    lo, hi = math.log(min(cs)) - 2.0, math.log(max(cs)) + 3.0
    best = None
    for i in range(60):
        c_mid = math.exp(lo + (hi - lo) * i / 59)
        for j in range(40):
            b = 0.2 * 1.1 ** j  # 0.2 .. ~8
            s = [sigmoid_gain(c, b, c_mid) for c, _ in points]
            denom = sum(x * x for x in s)
            if denom == 0:
                continue
            gain = sum(x * (r - r0) for x, (_, r) in zip(s, points)) / denom
            a = min(max(r0 + gain, r0), 1.0)
            sse = sum((r0 + (a - r0) * x - r) ** 2 for x, (_, r) in zip(s, points))
            if best is None or sse < best[0]:
                best = (sse, a, b, c_mid)
    sse, a, b, c_mid = best
    return Fit(A=a, B=b, C_mid=c_mid, R0=r0, rmse=math.sqrt(sse / len(points)))


def bootstrap(seed_points: list[list[tuple[float, float]]], r0: float, rounds: int = 200,
              seed: int = 0) -> dict | None:
    """Fit on all seeds' points, then on ``rounds`` resamples of the seeds: the fit and the spread of A and B
    (standard deviation and 2.5-97.5 percentiles). None when the pooled points are too few to fit."""
    pooled = [p for points in seed_points for p in points]
    fit = fit_curve(pooled, r0)
    if fit is None:
        return None
    rng, fits = random.Random(seed), []
    for _ in range(rounds if len(seed_points) > 1 else 0):
        sample = [p for _ in seed_points for p in rng.choice(seed_points)]
        f = fit_curve(sample, r0)
        if f is not None:
            fits.append(f)

    def spread(name: str) -> dict:
        values = sorted(getattr(f, name) for f in fits)
        if len(values) < 2:
            return {"std": float("nan"), "lo": float("nan"), "hi": float("nan")}
        return {"std": statistics.stdev(values), "lo": values[int(0.025 * (len(values) - 1))],
                "hi": values[int(0.975 * (len(values) - 1))]}

    return {"A": fit.A, "B": fit.B, "C_mid": fit.C_mid, "R0": r0, "rmse": fit.rmse, "A_spread": spread("A"),
            "B_spread": spread("B"), "bootstrap_fits": len(fits)}
