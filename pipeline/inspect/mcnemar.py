"""McNemar's test: do two classifiers scored on the same test images differ in accuracy?

Only the discordant images count: ``b`` = right by A and wrong by B, ``c`` = wrong
by A and right by B. Under the null hypothesis (equal accuracy) each discordant
image is A's or B's with probability 1/2, so ``b ~ Binomial(b + c, 1/2)``.
Below :data:`EXACT_BELOW` discordant images the two-sided exact binomial p-value
is used; from there on the chi-square statistic with one degree of freedom and
Edwards' continuity correction, ``(|b - c| - 1)^2 / (b + c)``, which is accurate
there and cheap for any count.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np

EXACT_BELOW = 25  # discordant pairs below which the exact binomial test is used (the usual rule of thumb)
ALPHA = 0.05
EXACT = "exact binomial"
CHI2 = "chi-square, continuity corrected"


@dataclass(frozen=True)
class McNemar:
    """The outcome of the test: discordant counts, statistic (None for the exact test), p-value, method."""

    b: int  # right by A, wrong by B
    c: int  # wrong by A, right by B
    statistic: float | None
    p_value: float
    method: str

    @property
    def discordant(self) -> int:
        return self.b + self.c

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p_value < alpha

    def to_dict(self, alpha: float = ALPHA) -> dict[str, Any]:
        return {**asdict(self), "discordant": self.discordant, "alpha": alpha,
                "significant": self.significant(alpha)}


def discordant_counts(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """(b, c) from two bool arrays of shape (N,): was each test image classified right by A, by B?"""
    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError(f"expected two (N,) arrays of the same N, got {correct_a.shape} and {correct_b.shape}")
    return int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))


def exact_p_value(b: int, c: int) -> float:
    """Two-sided exact p-value: ``min(1, 2 P(X <= min(b, c)))`` for X ~ Binomial(b + c, 1/2), in integers."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2 ** n)))


def chi2_statistic(b: int, c: int) -> float:
    """``(|b - c| - 1)^2 / (b + c)``; the correction never takes the difference below zero."""
    n = b + c
    return 0.0 if n == 0 else max(abs(b - c) - 1, 0) ** 2 / n


def chi2_sf_1df(x: float) -> float:
    """P(X > x) for X chi-square with one degree of freedom: ``P(|Z| > sqrt(x)) = erfc(sqrt(x / 2))``."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2.0))


def mcnemar(b: int, c: int, exact_below: int = EXACT_BELOW) -> McNemar:
    """McNemar's test on the discordant counts ``b`` (A right, B wrong) and ``c`` (A wrong, B right)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c < exact_below:
        return McNemar(b, c, None, exact_p_value(b, c), EXACT)
    stat = chi2_statistic(b, c)
    return McNemar(b, c, stat, chi2_sf_1df(stat), CHI2)


def mcnemar_predictions(labels: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray) -> McNemar:
    """McNemar's test of two sets of predictions, int arrays of shape (N,), against the same labels (N,)."""
    labels = np.asarray(labels)
    return mcnemar(*discordant_counts(np.asarray(predicted_a) == labels, np.asarray(predicted_b) == labels))
