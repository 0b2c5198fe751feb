"""The demo world: realistic listening, content that carries the latent genre in every
modality (imperfectly), and an oracle ceiling well above the popularity floor.

Media are rendered in memory for a genre-stratified sample (the same render functions
the corpus writer encodes), so these tests run in seconds instead of generating the whole
demo corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mirkit.synth.audio import render
from mirkit.synth.corpus import PLAYS_FILE, _media_jobs, _pick_mess
from mirkit.synth.covers import render_cover
from mirkit.synth.listening import (
    ListeningModel,
    PlayLog,
    WorldIndex,
    plays_per_user,
    simulate_user,
)
from mirkit.synth.lyrics import write_lyrics
from mirkit.synth.oracle import ceiling_report, read_play_log
from mirkit.synth.presets import PRESETS
from mirkit.synth.stats import play_log_statistics
from mirkit.synth.world import MOODS, World, build_world

PER_GENRE = 20


@pytest.fixture(scope="module")
def demo_world() -> World:
    return build_world(PRESETS["demo"], seed=0)


@pytest.fixture(scope="module")
def demo_log(demo_world: World) -> PlayLog:
    index = WorldIndex(demo_world, ListeningModel())
    counts = plays_per_user(demo_world, PRESETS["demo"].n_plays, seed=0)
    return PlayLog.from_users(
        [simulate_user(index, u, int(n), seed=0) for u, n in enumerate(counts)]
    )


def test_presets_have_the_promised_sizes(demo_world, demo_log):
    assert "user_000232" in demo_world.users.user_id
    assert demo_world.n_tracks == 2000 and len(demo_world.users.user_id) == 500
    assert len(demo_log.track) == 60_000
    large = PRESETS["large"]
    assert (large.n_tracks, large.n_users, large.n_plays) >= (20_000, 5000, 2_000_000)


def test_play_log_has_realistic_statistics(demo_world, demo_log):
    stats = play_log_statistics(demo_world, demo_log)
    assert 0.08 < stats["share of plays, top 1% of tracks"] < 0.35  # a long tail, not a spike
    assert stats["tracks never played"] < 0.15
    assert 0.2 < stats["repeat rate (track played before by the user)"] < 0.6
    assert 0.02 < stats["back-to-back repeat rate"] < 0.12
    assert 0.15 < stats["same-artist continuation (within sessions)"] < 0.5
    assert 5 < stats["mean session length (plays)"] < 20
    assert 0.005 < stats["share of plays of new releases"] < 0.08


def test_new_releases_are_cold_before_a_global_time_cut(demo_world, demo_log):
    cut = np.quantile(demo_log.time_s, 0.9)
    new = demo_world.tracks.is_new
    played_before = np.zeros(demo_world.n_tracks, dtype=bool)
    played_before[demo_log.track[demo_log.time_s < cut]] = True
    played_after = np.zeros(demo_world.n_tracks, dtype=bool)
    played_after[demo_log.track[demo_log.time_s >= cut]] = True
    cold_and_played = new & ~played_before & played_after
    assert cold_and_played.sum() >= 50


def test_oracle_beats_the_popularity_floor_by_far(demo_world, demo_log):
    report = ceiling_report(demo_world, demo_log, ListeningModel())
    loo = report["leave-one-out"]
    assert loo["oracle"]["Recall@10"] > 3 * loo["most-popular"]["Recall@10"]
    assert loo["oracle"]["Recall@10"] > 2 * loo["user most-played"]["Recall@10"]
    assert loo["oracle"]["Recall@10"] < 0.6  # listening is not deterministic
    cold = report["global time, cold targets"]
    assert cold["oracle"]["n"] >= 200
    assert cold["oracle"]["Recall@10"] > 0.1 and cold["most-popular"]["Recall@10"] == 0.0
    for protocol in ("leave-one-out", "global time"):
        whole, repeats = report[protocol], report[f"{protocol}, repeat targets"]
        assert 0.2 < repeats["oracle"]["n"] / whole["oracle"]["n"] < 0.6  # the repeat rate
        # ACT-R ranks the user's own tracks first: all its hits are repeats
        actr = "recency-frequency (ACT-R)"
        assert repeats[actr]["Recall@10"] > 2 * whole[actr]["Recall@10"]


def _stratified(world: World, eligible: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    genre = world.tracks.genre
    return np.concatenate(
        [
            rng.permutation(np.flatnonzero((genre == g) & eligible))[:PER_GENRE]
            for g in range(len(world.genres))
        ]
    )


def _accuracy(features: np.ndarray, labels: np.ndarray, ridge: float) -> float:
    """Held-out accuracy of a ridge classifier (one-hot targets) on a 70/30 split."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-9)
    x = np.hstack([x, np.ones((len(x), 1))])
    order = np.random.default_rng(0).permutation(len(labels))
    train, test = order[: int(0.7 * len(order))], order[int(0.7 * len(order)) :]
    y = np.eye(labels.max() + 1)[labels]
    w = np.linalg.solve(x[train].T @ x[train] + ridge * np.eye(x.shape[1]), x[train].T @ y[train])
    return float(np.mean((x[test] @ w).argmax(1) == labels[test]))


def _mel_statistics(wave: np.ndarray) -> np.ndarray:
    """Mean and spread of log band energies, plus onset autocorrelation (rhythm)."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, 1024)[::512] * np.hanning(1024)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    edges = np.unique(np.geomspace(1, power.shape[1] - 1, 41).astype(int))
    bands = np.log(np.add.reduceat(power, edges, axis=1) + 1e-8)
    onset = np.maximum(np.diff(bands.sum(1)), 0)
    onset -= onset.mean()
    autocorr = np.correlate(onset, onset, "full")[len(onset) :][:60] / (onset @ onset + 1e-9)
    return np.concatenate([bands.mean(0), bands.std(0), autocorr])


def _colour_histogram(image) -> np.ndarray:
    hsv = np.asarray(image.convert("HSV"), dtype=float).reshape(-1, 3) / 255
    hist, _ = np.histogramdd(hsv, bins=(12, 3, 3), range=[(0, 1)] * 3)
    return hist.ravel() / hist.sum()


@pytest.fixture(scope="module")
def demo_jobs(demo_world):
    mess = _pick_mess(np.random.default_rng([0, 9]), demo_world, demo_world.preset)
    return _media_jobs(demo_world, Path("unused"), mess, seed=0)


def test_audio_alone_carries_the_genre(demo_world, demo_jobs):
    pick = _stratified(demo_world, np.ones(demo_world.n_tracks, dtype=bool))
    features = np.array(
        [
            _mel_statistics(
                render(
                    demo_jobs[i].audio, 22050, 10.0, np.random.default_rng(list(demo_jobs[i].seed))
                )
            )
            for i in pick
        ]
    )
    accuracy = _accuracy(features, demo_world.tracks.genre[pick], ridge=10.0)
    assert 5 / 12 < accuracy < 0.99, accuracy


def test_covers_alone_carry_the_genre(demo_world, demo_jobs):
    pick = _stratified(demo_world, np.ones(demo_world.n_tracks, dtype=bool))
    features = np.array([_colour_histogram(render_cover(demo_jobs[i].cover)) for i in pick])
    accuracy = _accuracy(features, demo_world.tracks.genre[pick], ridge=1.0)
    assert 5 / 12 < accuracy < 0.99, accuracy


def test_lyrics_alone_carry_the_genre(demo_world):
    t = demo_world.tracks
    pick = _stratified(demo_world, ~t.instrumental)
    texts = [
        write_lyrics(
            np.random.default_rng([0, 8, i]),
            demo_world.vocabulary,
            demo_world.artist_language[t.artist[i]],
            demo_world.genres[t.genre[i]],
            MOODS[t.mood[i]],
            demo_world.artist_theme[t.artist[i]],
        )
        for i in pick
    ]
    vocabulary = {w: k for k, w in enumerate(sorted({w for text in texts for w in text.split()}))}
    counts = np.zeros((len(texts), len(vocabulary)))
    for row, text in enumerate(texts):
        for word in text.split():
            counts[row, vocabulary[word]] += 1
    accuracy = _accuracy(np.log1p(counts), t.genre[pick], ridge=10.0)
    assert 5 / 12 < accuracy < 0.99, accuracy


def test_oracle_reads_the_written_play_log_back(tiny_corpus):
    """The TSV (with its duplicated rows, unknown tracks and missing ids) parses back to
    exactly the simulated plays."""
    import json

    truth = json.loads((tiny_corpus / "truth.json").read_text())
    world = World.from_truth(truth["world"])
    index = WorldIndex(world, ListeningModel(**truth["listening_model"]))
    counts = plays_per_user(world, world.preset.n_plays, seed=0)
    simulated = PlayLog.from_users(
        [simulate_user(index, u, int(n), seed=0) for u, n in enumerate(counts)]
    )
    parsed = read_play_log(tiny_corpus / PLAYS_FILE, world)
    assert np.array_equal(parsed.user, simulated.user)
    assert np.array_equal(parsed.track, simulated.track)
    assert np.array_equal(parsed.time_s, simulated.time_s)
