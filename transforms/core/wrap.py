"""Group-size distributions (``--wrap-mode``), matching the original Mosaic-IT sampler.

The original draws a variate x from a base distribution, rejects it until it lies in
the allowed range, and takes ``size = wrap_max - int(x)``. Sampling the base
distribution truncated to that range by inverse CDF gives the same distribution with
one uniform draw and no loop. :func:`size_pmf` gives the exact probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

from transforms.core.randomness import HashStream

WRAP_MODES = ("uniform", "fix_max", "max_length", "exp", "pareto", "lognormal", "logistic2")

_NORMAL = NormalDist()
_LOGISTIC_SCALE = 2.0


class _Truncated:
    """A continuous base distribution restricted to [low, high), sampled by inverse CDF."""

    def __init__(self, cdf: Callable[[float], float], inverse: Callable[[float], float], low: float, high: float):
        self.cdf, self.inverse = cdf, inverse
        self.low, self.high = low, high
        self.cdf_low, self.cdf_high = cdf(low), cdf(high)

    def sample(self, u: float) -> float:
        return self.inverse(self.cdf_low + u * (self.cdf_high - self.cdf_low))

    def probability(self, low: float, high: float) -> float:
        return (self.cdf(high) - self.cdf(low)) / (self.cdf_high - self.cdf_low)


def _lognormal_cdf(x: float) -> float:
    return 0.0 if x <= 0 else _NORMAL.cdf(math.log(x))


def _lognormal_inverse(p: float) -> float:
    return 0.0 if p <= 0 else math.exp(_NORMAL.inv_cdf(min(p, 1 - 1e-16)))


def _base(mode: str, wrap_max: int) -> _Truncated:
    if mode == "exp":  # x ~ Exp(1), x < max
        return _Truncated(lambda x: 1 - math.exp(-x), lambda p: -math.log1p(-p), 0.0, wrap_max)
    if mode == "pareto":  # x ~ Lomax(1) - 1 (numpy's pareto(1) - 1), x < max
        return _Truncated(lambda x: 1 - 1 / (x + 2), lambda p: 1 / (1 - p) - 2, -1.0, wrap_max)
    if mode == "lognormal":  # x ~ LogNormal(0, 1), x < max
        return _Truncated(_lognormal_cdf, _lognormal_inverse, 0.0, wrap_max)
    if mode == "logistic2":  # x ~ Logistic(0, 2), 0 < x < max
        return _Truncated(
            lambda x: 1 / (1 + math.exp(-x / _LOGISTIC_SCALE)),
            lambda p: _LOGISTIC_SCALE * math.log(p / (1 - p)),
            0.0,
            wrap_max,
        )
    raise ValueError(f"unknown wrap mode '{mode}'; choose one of {', '.join(WRAP_MODES)}")


def draw_group_size(mode: str, wrap_max: int, stream: HashStream) -> int | None:
    """Target size of one group; None means no limit but the token budget."""
    if mode == "uniform":
        return 1 + stream.below(wrap_max)
    if mode == "fix_max":
        return wrap_max
    if mode == "max_length":
        return None
    x = _base(mode, wrap_max).sample(stream.random())
    return min(wrap_max, max(1, wrap_max - math.trunc(x)))


def size_pmf(mode: str, wrap_max: int) -> dict[int, float]:
    """Exact probability of each target size (before the budget and key ends cut groups)."""
    if mode == "uniform":
        return dict.fromkeys(range(1, wrap_max + 1), 1 / wrap_max)
    if mode == "fix_max":
        return {wrap_max: 1.0}
    if mode == "max_length":
        return {}
    base = _base(mode, wrap_max)
    pmf = {}
    for size in range(1, wrap_max + 1):
        whole = wrap_max - size  # the draws with int(x) == whole; for pareto, whole 0 spans (-1, 1)
        low = float(whole) if whole > 0 else base.low
        pmf[size] = base.probability(low, min(whole + 1.0, base.high))
    return pmf
