"""The ceiling and the floor of a synthetic corpus, computed from its truth alone.

The oracle ranks every track by the generator's true next-track probability, which no
learned model can beat in expectation; most-popular and the user's own most-played are
the floor. Both are measured under the protocols of the evaluation: leave-one-out (last
play of each user) and a global time split, whose cold slice holds targets with no
plays before the cut.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mirkit.evaluation.baselines import last_played, popularity, user_most_played
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
        for name, rows_scores in scores.items():
            ranks[name].append(target_ranks(np.array(rows_scores), log.track[rows] + 1))
    return {name: np.concatenate(parts) for name, parts in ranks.items()}


def ceiling_report(world: World, log: PlayLog, model: ListeningModel) -> dict[str, dict]:
    """Metrics of the oracle and baselines under leave-one-out and the global time split,
    with the global split's cold slice (targets without plays before the cut)."""
    report: dict[str, dict] = {}
    test, train = leave_one_out_targets(log)
    for method, ranks in score_methods(world, log, test, train, model).items():
        report.setdefault("leave-one-out", {})[method] = ranking_report(ranks)
    test, train = global_time_targets(log)
    cold = np.bincount(log.track[train], minlength=world.n_tracks)[log.track[test]] == 0
    for method, ranks in score_methods(world, log, test, train, model).items():
        report.setdefault("global time", {})[method] = ranking_report(ranks)
        report.setdefault("global time, cold targets", {})[method] = ranking_report(ranks[cold])
    return report
