"""Statistics of a play log that say whether it looks like real listening."""

from __future__ import annotations

import numpy as np

from mirkit.synth.listening import PlayLog
from mirkit.synth.oracle import user_bounds
from mirkit.synth.world import World


def play_log_statistics(world: World, log: PlayLog, session_gap_s: float = 1800.0) -> dict:
    """Popularity concentration, repeat and continuation rates, new-release share."""
    t = world.tracks
    counts = np.sort(np.bincount(log.track, minlength=world.n_tracks))[::-1]
    same_user = log.user[1:] == log.user[:-1]
    in_session = same_user & (np.diff(log.time_s) < session_gap_s)
    repeats = 0
    for start, end in user_bounds(log):
        _, first = np.unique(log.track[start:end], return_index=True)
        repeats += (end - start) - len(first)
    artist = t.artist[log.track]
    return {
        "plays": int(len(log.track)),
        "share of plays, top 1% of tracks": float(
            counts[: max(1, len(counts) // 100)].sum() / counts.sum()
        ),
        "share of plays, top 10 tracks": float(counts[:10].sum() / counts.sum()),
        "tracks never played": float(np.mean(counts == 0)),
        "repeat rate (track played before by the user)": repeats / len(log.track),
        "back-to-back repeat rate": float(
            np.mean(log.track[1:][same_user] == log.track[:-1][same_user])
        ),
        "same-artist continuation (within sessions)": float(
            np.mean(artist[1:][in_session] == artist[:-1][in_session])
        ),
        "mean session length (plays)": float(len(log.track) / (1 + (~in_session).sum())),
        "share of plays of new releases": float(np.mean(t.is_new[log.track])),
    }
