"""What an experiment learns from feedback: the Beta posterior per config and Thompson sampling.

Why: in v4 an experiment favoured the configs whose logs got positive feedback (spec §9: per config
``mean``, ``spread``, ``trials_count``). Each config's success rate has a Beta(1 + successes,
1 + failures) posterior (a uniform prior); every sample of ``/chat-experiment`` (and of an
experiment deployed to ``/chat-deployed``) draws one rate per active config from its posterior and
takes the config with the highest draw (Thompson sampling). With no feedback every posterior is
Beta(1, 1), so the choice is uniform. The counts come from the store on every call, never from
process memory: several server processes may share one database.

Definitions (``docs/v4-decisions.md``):

* a *trial* is a log sampled for the experiment that has feedback of one of the types named in the
  experiment's ``positive_labels``; it is a *success* when one of that feedback matches a positive
  label (type and value), else a *failure*;
* ``mean`` is the posterior mean ``(1 + s) / (2 + s + f)``;
* ``spread`` is the width of the posterior's central 90 % credible interval (its 95th minus its
  5th percentile): 0.9 with no trials, shrinking as trials accumulate.

Pure functions only (no I/O), so they are tested on their own; the standard library has no Beta
quantile, so ``beta_cdf`` is the regularized incomplete beta function by its continued fraction.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

CREDIBLE_MASS = 0.9  # spread: the central 90 % interval
_EPSILON = 1e-15
_TINY = 1e-300


@dataclass(frozen=True)
class Arm:
    """One config of an experiment with its feedback counts."""

    config_id: str
    successes: int = 0
    failures: int = 0

    @property
    def trials(self) -> int:
        return self.successes + self.failures

    @property
    def alpha(self) -> float:
        return 1.0 + self.successes

    @property
    def beta(self) -> float:
        return 1.0 + self.failures


def posterior_mean(arm: Arm) -> float:
    return arm.alpha / (arm.alpha + arm.beta)


def spread(arm: Arm, mass: float = CREDIBLE_MASS) -> float:
    """Width of the central ``mass`` credible interval of the arm's Beta posterior."""
    tail = (1.0 - mass) / 2.0
    return beta_quantile(1.0 - tail, arm.alpha, arm.beta) - beta_quantile(tail, arm.alpha, arm.beta)


def thompson(arms: Sequence[Arm], n: int, rng: random.Random) -> list[str]:
    """``n`` config ids, each chosen independently: one posterior draw per arm, the highest wins.

    Raises:
        ValueError: no arms.
    """
    if not arms:
        raise ValueError("no configs to sample from")
    chosen = []
    for _ in range(n):
        draws = [rng.betavariate(arm.alpha, arm.beta) for arm in arms]
        chosen.append(arms[max(range(len(arms)), key=draws.__getitem__)].config_id)
    return chosen


# -- the Beta distribution's CDF and quantiles -----------------------------------------------------
def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), the CDF of Beta(a, b) at ``x``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # the continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(1.0 - x, b, a) / b


def _continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b), by the modified Lentz method."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, 100_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            result *= c * d
        if abs(c * d - 1.0) < _EPSILON:
            break
    return result


def beta_quantile(p: float, a: float, b: float) -> float:
    """The ``p`` quantile of Beta(a, b), by bisection on ``beta_cdf`` (to about 1e-12)."""
    low, high = 0.0, 1.0
    for _ in range(45):
        middle = (low + high) / 2.0
        if beta_cdf(middle, a, b) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0
