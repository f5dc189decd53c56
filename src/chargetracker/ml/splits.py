"""Train/test splits over samples.

* :func:`group_kfold`: folds of whole vehicles (no VIN on both sides), balanced by
  sample count, VINs shuffled by a seed so repeats differ.
* :func:`time_split`: train on samples whose whole label horizon ends before the
  cutoff date, test on prediction dates on or after it (no label day seen in training
  lies in the test period).
* :func:`random_split`: the reference's random 4:1 split of samples. It leaks the same
  vehicle and overlapping windows into both sides; kept only to show how optimistic it is.

Each returns a list of (train_index, test_index) int arrays into the sample arrays.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["group_kfold", "random_split", "time_split"]

Split = tuple[np.ndarray, np.ndarray]


def group_kfold(groups: np.ndarray, k: int, *, seed: int = 0) -> list[Split]:
    """k folds of groups: each group (VIN) in exactly one test fold; groups go, largest
    first after a seeded shuffle, to the fold with the fewest samples so far."""
    g = np.asarray(groups)
    uniq, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    if k < 2:
        raise ConfigError("need at least 2 folds")
    if uniq.size < k:
        raise ConfigError(f"{uniq.size} vehicles cannot fill {k} folds")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(uniq.size)
    order = perm[np.argsort(-counts[perm], kind="stable")]
    fold_of = np.empty(uniq.size, np.int64)
    load = np.zeros(k, np.int64)
    for gi in order:  # one step per vehicle, not per sample
        f = int(np.argmin(load))
        fold_of[gi] = f
        load[f] += counts[gi]
    sample_fold = fold_of[inv]
    return [(np.flatnonzero(sample_fold != f), np.flatnonzero(sample_fold == f))
            for f in range(k)]


def time_split(day: np.ndarray, cutoff_day: int, *, horizon_days: int = 14) -> Split:
    """Train: label horizon [t, t+horizon) entirely before ``cutoff_day``; test: t >=
    cutoff (days since the epoch)."""
    d = np.asarray(day, dtype=np.int64)
    train = np.flatnonzero(d + horizon_days <= cutoff_day)
    test = np.flatnonzero(d >= cutoff_day)
    if train.size == 0 or test.size == 0:
        raise ConfigError("the time cutoff leaves no training or no test samples")
    return train, test


def random_split(n: int, *, ratio: float = 4.0, seed: int = 0) -> Split:
    """The reference's shuffled ratio:1 split of samples (leaky; for comparison)."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(n * ratio / (1.0 + ratio))
    return np.sort(perm[:cut]), np.sort(perm[cut:])
