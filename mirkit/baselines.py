"""Non-learned recommenders every evaluation shows beside a model, from training data only.

Scores are over item ids 0..n_items (0 = padding, never recommended); higher is better.
Ties among items a baseline cannot tell apart are broken by global popularity, then by
item id, so the baselines are deterministic."""

from __future__ import annotations

import numpy as np


def popularity(train_items: np.ndarray, n_items: int) -> np.ndarray:
    """The most-popular baseline: training play counts per item id, plus a vanishing
    item-id tie-break."""
    counts = np.bincount(train_items, minlength=n_items + 1).astype(np.float64)
    counts[0] = -np.inf
    return counts + 1e-6 * (n_items - np.arange(n_items + 1)) / (n_items + 1)


def user_most_played(history: np.ndarray, pop: np.ndarray) -> np.ndarray:
    """The user's own play counts; unplayed items by popularity."""
    scores = pop * 1e-9
    np.add.at(scores, history, 1.0)
    return scores


def last_played(history: np.ndarray, pop: np.ndarray) -> np.ndarray:
    """The previous track first (repeat it), then popularity."""
    scores = pop * 1e-9
    if len(history):
        scores[history[-1]] += 1.0
    return scores
