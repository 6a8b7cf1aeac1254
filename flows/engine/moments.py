"""Count, mean, sum of squared deviations, min and max: the state of a statistic, one
group at a time (:class:`Moments`) or many groups and fields at once (blocks: numpy
arrays of shape (groups, fields, len(FIELDS)))."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FIELDS = ("n", "total", "mean", "m2", "low", "high")
"""The fields of :class:`Moments`, in the order of a block's last axis."""
N, TOTAL, MEAN, M2, LOW, HIGH = range(len(FIELDS))
FIELD_OF_STAT = {"sum": "total", "mean": "mean", "min": "low", "max": "high"}
"""The field that is each statistic but ``stddev`` (from ``m2`` and ``n``)."""


@dataclass(slots=True)
class Moments:
    """Count, mean, sum of squared deviations, min and max of non-null values."""

    n: int = 0
    total: float = 0.0
    mean: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        """Moments of a float array without nulls."""
        if len(values) == 0:
            return cls()
        total = float(values.sum())
        mean = total / len(values)
        m2 = float(((values - mean) ** 2).sum())
        return cls(len(values), total, mean, m2, float(values.min()), float(values.max()))

    def combine(self, other: Moments) -> Moments:
        """Chan et al.'s parallel update: exact to rounding, in any order."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n
        low, high = min(self.low, other.low), max(self.high, other.high)
        return Moments(n, self.total + other.total, mean, m2, low, high)


def moments_of_runs(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """A block of moments: one per run of rows of ``values`` (rows by fields, NaN for a
    null) and field. The runs begin at ``bounds`` (the first at 0) and go on to the next
    one, or to the end."""
    valid = ~np.isnan(values)
    block = np.empty((len(bounds), values.shape[1], len(FIELDS)))
    block[..., N] = n = np.add.reduceat(valid.astype(np.float64), bounds, axis=0)
    block[..., TOTAL] = np.add.reduceat(np.where(valid, values, 0.0), bounds, axis=0)
    block[..., MEAN] = mean = _mean(block[..., TOTAL], n)
    deviations = np.where(valid, values - _spread_out(mean, bounds, len(values)), 0.0)
    block[..., M2] = np.add.reduceat(deviations**2, bounds, axis=0)
    block[..., LOW] = np.minimum.reduceat(np.where(valid, values, np.inf), bounds, axis=0)
    block[..., HIGH] = np.maximum.reduceat(np.where(valid, values, -np.inf), bounds, axis=0)
    return block


def merge_moments(block: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """:meth:`Moments.combine` of runs of rows of a block at once (runs as in
    :func:`moments_of_runs`)."""
    merged = np.empty((len(bounds), *block.shape[1:]))
    merged[..., N] = n = np.add.reduceat(block[..., N], bounds, axis=0)
    merged[..., TOTAL] = np.add.reduceat(block[..., TOTAL], bounds, axis=0)
    merged[..., MEAN] = mean = _mean(merged[..., TOTAL], n)
    spread = block[..., N] * (block[..., MEAN] - _spread_out(mean, bounds, len(block))) ** 2
    merged[..., M2] = np.add.reduceat(block[..., M2] + spread, bounds, axis=0)
    merged[..., LOW] = np.minimum.reduceat(block[..., LOW], bounds, axis=0)
    merged[..., HIGH] = np.maximum.reduceat(block[..., HIGH], bounds, axis=0)
    return merged


def _mean(total: np.ndarray, n: np.ndarray) -> np.ndarray:
    mean: np.ndarray = np.divide(total, n, out=np.zeros_like(total), where=n > 0)
    return mean


def _spread_out(per_run: np.ndarray, bounds: np.ndarray, rows: int) -> np.ndarray:
    """Each run's row of ``per_run`` repeated over the rows of the run."""
    return np.repeat(per_run, np.diff(bounds, append=rows), axis=0)
