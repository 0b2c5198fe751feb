"""The ceiling and the floor of a synthetic corpus, computed from its truth alone.

The oracle ranks every track by the generator's true next-track probability, which no
learned model can beat in expectation; most-popular and the user's own most-played are
the floor, last-played and ACT-R's recency-frequency the music baselines. All are
measured under the protocols of the evaluation: leave-one-out (last play of each user)
and a global time split, whose cold slice holds targets with no plays before the cut;
the repeat slices (targets the user played before) show the ceiling on repeats, where a
ranking that puts every played track first (ACT-R) reaches the oracle by giving up every
discovery.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mirkit.evaluation.baselines import (
    last_played,
    popularity,
    recency_frequency,
    user_most_played,
)
from mirkit.evaluation.metrics import ranking_report, target_ranks
from mirkit.synth.listening import (
    DAY_S,
    ListeningModel,
    PlayLog,
    WorldIndex,
    next_track_distribution,
)
from mirkit.synth.world import START_DATE, World


def read_play_log(tsv: Path, world: World) -> PlayLog:
    """Parse a synthetic Last.fm-1K TSV back to track indices, independently of the
    preprocessing: rows without a track id are matched by artist and title, plays of
    tracks outside the world are dropped and duplicated rows (same user, track and second)
    are kept once."""
    t = world.tracks
    by_id = {track_id: i for i, track_id in enumerate(t.track_id)}
    by_title = {
        (world.artist_name[a], name): i
        for i, (a, name) in enumerate(zip(t.artist, t.name, strict=True))
    }
    users = {user_id: u for u, user_id in enumerate(world.users.user_id)}
    start = datetime.strptime(START_DATE, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seen: set[tuple[str, str, str]] = set()
    rows = []
    with open(tsv, encoding="utf-8") as f:
        for line in f:
            user_id, when, _, artist, track_id, title = line.rstrip("\n").split("\t")
            track = by_id.get(track_id) if track_id else by_title.get((artist, title))
            if track is None or (user_id, when, track_id + title) in seen:
                continue
            seen.add((user_id, when, track_id + title))
            moment = datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            rows.append((users[user_id], (moment - start).total_seconds(), track))
    rows.sort()
    user, time_s, track = (np.array(c) for c in zip(*rows, strict=True))
    return PlayLog(user.astype(np.int64), track.astype(np.int64), time_s)


def user_bounds(log: PlayLog) -> list[tuple[int, int]]:
    """[start, end) row ranges of each user's plays."""
    cuts = np.flatnonzero(np.diff(log.user)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(log.user)]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def leave_one_out_targets(log: PlayLog) -> tuple[np.ndarray, np.ndarray]:
    """(test rows, training mask): the last play of each user is the test target, the one
    before it is validation; both are left out of training counts."""
    bounds = user_bounds(log)
    test = np.array([end - 1 for _, end in bounds])
    train = np.ones(len(log.user), dtype=bool)
    train[test] = False
    train[test - 1] = False
    return test, train


def global_time_targets(log: PlayLog, quantile: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """(test rows, training mask) for a global cut at the `quantile` of play times: every
    play after the cut by a user who also played before it is a target, predicted from
    all the user's earlier plays; only plays before the cut train."""
    cut = np.quantile(log.time_s, quantile)
    train = log.time_s < cut
    has_past = np.zeros(len(train), dtype=bool)
    for start, end in user_bounds(log):
        has_past[start:end] = train[start:end].any()
    return np.flatnonzero(~train & has_past), train


def score_methods(
    world: World,
    log: PlayLog,
    test: np.ndarray,
    train: np.ndarray,
    model: ListeningModel,
    chunk: int = 256,
) -> dict[str, np.ndarray]:
    """Ranks of the test targets under the oracle and the baselines (in chunks of rows,
    so memory stays at chunk x catalogue whatever the number of targets)."""
    index = WorldIndex(world, model)
    # the library baselines score item ids with 0 as padding: track index t is id t + 1
    pop = popularity(np.bincount(log.track[train] + 1, minlength=world.n_tracks + 1))
    ranks: dict[str, list[np.ndarray]] = {
        "oracle": [],
        "most-popular": [],
        "user most-played": [],
        "last-played": [],
        "recency-frequency (ACT-R)": [],
    }
    for begin in range(0, len(test), chunk):
        rows = test[begin : begin + chunk]
        scores: dict[str, list[np.ndarray]] = {name: [] for name in ranks}
        for row in rows:
            start = int(np.searchsorted(log.user, log.user[row]))
            history = log.track[start:row]
            gap = log.time_s[row] - log.time_s[row - 1] if row > start else np.inf
            session_start = bool(gap > model.min_session_gap_s / 2)
            oracle = next_track_distribution(
                index, int(log.user[row]), history.tolist(), log.time_s[row] / DAY_S, session_start
            )
            scores["oracle"].append(np.concatenate([[-np.inf], oracle]))
            scores["most-popular"].append(pop)
            scores["user most-played"].append(user_most_played(history + 1, pop))
            scores["last-played"].append(last_played(history + 1, pop))
            scores["recency-frequency (ACT-R)"].append(
                recency_frequency(history + 1, log.time_s[start:row], log.time_s[row], pop)
            )
        for name, rows_scores in scores.items():
            ranks[name].append(target_ranks(np.array(rows_scores), log.track[rows] + 1))
    return {name: np.concatenate(parts) for name, parts in ranks.items()}


def repeat_targets(log: PlayLog, test: np.ndarray) -> np.ndarray:
    """Whether the track of each test row was played before by the same user."""
    starts = np.searchsorted(log.user, log.user[test])
    return np.array(
        [log.track[row] in log.track[start:row] for start, row in zip(starts, test, strict=True)],
        dtype=bool,
    )


def ceiling_report(world: World, log: PlayLog, model: ListeningModel) -> dict[str, dict]:
    """Metrics of the oracle and baselines under leave-one-out and the global time split,
    each with its repeat slice, and the global split's cold slice (targets without plays
    before the cut)."""
    report: dict[str, dict] = {}
    test, train = leave_one_out_targets(log)
    slices = {"leave-one-out": None, "leave-one-out, repeat targets": repeat_targets(log, test)}
    _add_slices(report, score_methods(world, log, test, train, model), slices)
    test, train = global_time_targets(log)
    trained_plays = np.bincount(log.track[train], minlength=world.n_tracks)
    slices = {
        "global time": None,
        "global time, repeat targets": repeat_targets(log, test),
        "global time, cold targets": trained_plays[log.track[test]] == 0,
    }
    _add_slices(report, score_methods(world, log, test, train, model), slices)
    return report


def _add_slices(
    report: dict[str, dict], ranks: dict[str, np.ndarray], slices: dict[str, np.ndarray | None]
) -> None:
    """report[slice][method]: the metrics of each method's ranks on each slice (None: all)."""
    for name, mask in slices.items():
        for method, method_ranks in ranks.items():
            chosen = method_ranks if mask is None else method_ranks[mask]
            report.setdefault(name, {})[method] = ranking_report(chosen)
