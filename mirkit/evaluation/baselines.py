"""Non-learned recommenders every evaluation shows beside a model, from training data only.

Scores are over item ids 0..n_items (0 = padding, never recommended); higher is better.
Ties among items a baseline cannot tell apart are broken by global popularity, then by
item id, so the baselines are deterministic."""

from __future__ import annotations

import numpy as np


def popularity(train_counts: np.ndarray) -> np.ndarray:
    """The most-popular baseline: training play counts per item id [n_items + 1], plus a
    vanishing item-id tie-break (id 0, padding, scores -inf)."""
    rows = len(train_counts)
    counts = train_counts.astype(np.float64)
    counts[0] = -np.inf
    return counts + 1e-6 * (rows - 1 - np.arange(rows)) / rows


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


def recency_frequency(
    history: np.ndarray, times: np.ndarray, request: int, pop: np.ndarray, decay: float = 0.5
) -> np.ndarray:
    """ACT-R base-level activation of each track the user played (Anderson's model of
    memory, used for music re-listening by Reiter-Haas et al., RecSys 2021): log of the
    sum over its plays of (seconds since the play) ^ -decay, with ACT-R's customary
    decay 0.5; unplayed items by popularity, below every played one."""
    # unplayed: -100 + popularity in [0, 1] (activations of plays within 10^80 seconds are
    # above it); a larger offset would round popularity's differences away in float64
    scores = pop / pop.max() - 100.0
    if len(history):
        ages = np.maximum(request - np.asarray(times, dtype=np.float64), 1.0)
        strength = np.zeros(len(pop))
        np.add.at(strength, history, ages**-decay)
        played = np.unique(history)
        scores[played] = np.log(strength[played]) + pop[played] * 1e-12
    return scores


def user_transitions(history: np.ndarray, pop: np.ndarray) -> np.ndarray:
    """What this user played right after their last track, the other times they played
    it (counts, the most recent transition breaking ties), then the user's own play
    counts, then popularity."""
    scores = user_most_played(history, pop) * 1e-3
    if len(history) > 1:
        after = np.flatnonzero(history[:-1] == history[-1]) + 1
        np.add.at(scores, history[after], 1.0)
        if len(after):
            scores[history[after[-1]]] += 0.5
    return scores
