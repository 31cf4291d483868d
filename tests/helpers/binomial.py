"""Tolerance of a count of successes among independent trials (sampling tests).

A sampler keeping each of `n` traces with probability `p` keeps Binomial(n, p) of them:
mean n*p, standard deviation sqrt(n*p*(1-p)). A test that accepts mean +- 4.5 sigma
fails by chance about once in 150,000 runs; it should also choose `n` so that a ratio
wrong by 2x (p/2 or 2p) lies outside those bounds (`detects_factor` checks it).
"""

from __future__ import annotations

import math

SIGMAS = 4.5


def bounds(n: int, p: float, sigmas: float = SIGMAS) -> tuple[int, int]:
    """The accepted [low, high] count: n*p -+ sigmas * sqrt(n*p*(1-p)), rounded outwards."""
    mean = n * p
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return max(0, math.floor(mean - spread)), min(n, math.ceil(mean + spread))


def detects_factor(n: int, p: float, factor: float = 2.0, sigmas: float = SIGMAS) -> bool:
    """Whether a true ratio of p/factor or p*factor (capped at 1) falls outside `bounds`
    with its own mean -+ sigmas deviations: the test could tell the error apart."""
    low, high = bounds(n, p, sigmas)
    for wrong in (p / factor, min(1.0, p * factor)):
        w_low, w_high = bounds(n, wrong, sigmas)
        if not (w_high < low or w_low > high):
            return False
    return True
