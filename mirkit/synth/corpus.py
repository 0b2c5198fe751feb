"""Write a synthetic corpus in the real input formats the preprocessing reads.

Layout of the output directory::

    userid-timestamp-artid-artname-traid-traname.tsv   plays, Last.fm-1K format
    userid-profile.tsv                                  user profiles, Last.fm-1K format
    tracks.csv                                          catalogue with numeric features
    lyrics.csv                                          track_id, lyrics
    audio/<track_id>.<mp3|ogg|flac|wav|m4a>
    covers/<track_id>.<jpg|png>
    truth.json                                          the latent world and the mess

The same preset, seed, lock file and platform give byte-identical files, whatever the
number of workers: every random draw is keyed by (seed, purpose, index).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from mirkit import log
from mirkit.ffmpeg import encode_audio
from mirkit.synth.audio import AudioSpec, render
from mirkit.synth.covers import CoverSpec, render_cover
from mirkit.synth.listening import ListeningModel, WorldIndex, plays_per_user, simulate_user
from mirkit.synth.lyrics import make_name, write_lyrics
from mirkit.synth.presets import CORPUS_VERSION, Preset
from mirkit.synth.world import GENRE_RING, MOODS, START_DATE, World, build_world, new_mbid

logger = logging.getLogger(__name__)

PLAYS_FILE = "userid-timestamp-artid-artname-traid-traname.tsv"
PROFILES_FILE = "userid-profile.tsv"
FORMAT_WEIGHT = {"mp3": 4.0, "ogg": 1.0, "flac": 1.5, "wav": 1.0, "m4a": 1.0}
"""Relative frequency of audio formats (mp3 dominates real collections)."""
MOOD_COLOUR = {
    "happy": (0.8, 0.95),
    "sad": (0.35, 0.5),
    "energetic": (0.95, 0.85),
    "calm": (0.3, 0.8),
}


@dataclass(frozen=True)
class MediaJob:
    """Everything one worker needs to write one track's audio and cover."""

    audio: AudioSpec | None
    audio_path: Path | None
    sample_rate: int
    channels: int
    seconds: float
    seed: tuple[int, ...]
    corrupt: bool
    cover: CoverSpec | None
    cover_path: Path | None


_worker_index: dict[str, WorldIndex] = {}


def _init_worker(preset: Preset, seed: int) -> None:
    """Each worker rebuilds the (deterministic) world once instead of receiving it per task."""
    _worker_index["index"] = WorldIndex(build_world(preset, seed), ListeningModel())


def _simulate(u: int, n_plays: int) -> tuple[np.ndarray, np.ndarray]:
    index = _worker_index["index"]
    return simulate_user(index, u, int(n_plays), index.world.seed)


def _chunk(n: int, workers: int) -> int:
    return max(1, n // (8 * workers))


def _write_media(job: MediaJob) -> int:
    """Render and encode one track's files; returns the bytes written."""
    written = 0
    if job.audio_path is not None:
        rng = np.random.default_rng(list(job.seed))
        if job.corrupt:  # random bytes under an audio extension: no decoder accepts them
            job.audio_path.write_bytes(rng.bytes(8192))
        else:
            wave = render(job.audio, job.sample_rate, job.seconds, rng)
            if job.channels == 2:  # a slightly delayed copy: a real stereo image
                wave = np.stack([wave, np.roll(wave, 40)], axis=1)
            encode_audio(wave, job.sample_rate, job.audio_path)
        written += job.audio_path.stat().st_size
    if job.cover_path is not None:
        image = render_cover(job.cover)
        if job.cover_path.suffix == ".png":
            image.save(job.cover_path, optimize=False)
        else:
            image.save(job.cover_path, quality=90)
        written += job.cover_path.stat().st_size
    return written


def _pick_mess(rng: np.random.Generator, world: World, preset: Preset) -> dict[str, list[int]]:
    """Disjoint sets of track indices that carry each kind of per-track mess."""
    n = world.n_tracks
    rates = preset.mess
    vocal = [int(i) for i in rng.permutation(n) if not world.tracks.instrumental[i]]
    mess: dict[str, list[int]] = {}
    for kind in ("empty_lyrics", "blank_lyrics"):
        k = rates.count(kind, n)
        mess[kind], vocal = sorted(vocal[:k]), vocal[k:]
    taken = {i for k in mess.values() for i in k}
    pool = [int(i) for i in rng.permutation(n) if int(i) not in taken]
    for kind in ("corrupt_audio", "missing_audio", "missing_cover", "plays_without_track_id"):
        k = rates.count(kind, n)
        mess[kind], pool = sorted(pool[:k]), pool[k:]
    artists = np.unique(world.tracks.artist)
    k = rates.count("artists_without_id", len(artists))
    mess["artists_without_id"] = sorted(int(a) for a in rng.permutation(artists)[:k])
    return mess


def _media_jobs(world: World, out: Path, mess: dict[str, list[int]], seed: int) -> list[MediaJob]:
    t, p = world.tracks, world.preset
    rng = np.random.default_rng([seed, 5])
    fmt_weights = np.array([FORMAT_WEIGHT[f] for f in p.audio_formats])
    fmt = rng.choice(len(p.audio_formats), size=world.n_tracks, p=fmt_weights / fmt_weights.sum())
    rate = rng.choice(len(p.sample_rates), size=world.n_tracks, p=_rate_weights(p))
    stereo = rng.random(world.n_tracks) < 0.5
    png = rng.random(len(world.album_name)) < 0.2
    genre_hue = {g: GENRE_RING.index(g) / len(GENRE_RING) for g in world.genres}
    album_mood = {}  # an album's cover colours follow the mood of its first track
    for album, mood in zip(t.album.tolist(), t.mood.tolist(), strict=True):
        album_mood.setdefault(album, mood)
    jobs = []
    for i, track_id in enumerate(t.track_id):
        a, g, mood = int(t.artist[i]), world.genres[t.genre[i]], MOODS[t.mood[i]]
        album = int(t.album[i])
        extension = "ogg" if i in mess["corrupt_audio"] else p.audio_formats[fmt[i]]
        has_audio = i not in mess["missing_audio"]
        has_cover = i not in mess["missing_cover"]
        sat, val = MOOD_COLOUR[MOODS[album_mood[album]]]
        jobs.append(
            MediaJob(
                audio=AudioSpec(
                    tempo=float(t.tempo[i]),
                    key=int(t.key[i]),
                    major=mood in ("happy", "energetic"),
                    energy=float(t.energy[i]),
                    brightness=float(t.brightness[i]),
                    timbre=tuple(float(x) for x in world.artist_timbre[a]),
                    attack=float(world.artist_attack[a]),
                    decay=float(world.artist_decay[a]),
                    rhythm=tuple(tuple(int(x) for x in r) for r in world.rhythm[t.genre[i]]),
                    progression=tuple(int(x) for x in world.progression[t.genre[i]]),
                    seventh_chords=g in ("jazz", "blues", "rnb"),
                ),
                audio_path=out / "audio" / f"{track_id}.{extension}" if has_audio else None,
                sample_rate=int(p.sample_rates[rate[i]]),
                channels=2 if stereo[i] else 1,
                seconds=p.audio_seconds,
                seed=(seed, 1, i),
                corrupt=i in mess["corrupt_audio"],
                cover=CoverSpec(
                    hue=genre_hue[g] + float(world.artist_hue[a]),
                    saturation=sat,
                    value=val,
                    motif=world.artist_motif[a],
                    seed=seed * 1_000_003 + album,
                ),
                cover_path=(
                    out / "covers" / f"{track_id}.{'png' if png[album] else 'jpg'}"
                    if has_cover
                    else None
                ),
            )
        )
    return jobs


def _rate_weights(preset: Preset) -> np.ndarray:
    w = np.array([3.0 if r == 22050 else 1.0 for r in preset.sample_rates])
    return w / w.sum()


def _iso(seconds: float) -> str:
    start = datetime.strptime(START_DATE, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (start + timedelta(seconds=float(seconds))).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_plays(
    path: Path,
    world: World,
    plays: list[tuple[np.ndarray, np.ndarray]],
    mess: dict[str, list[int]],
    seed: int,
) -> dict[str, list[str]]:
    """Last.fm-1K rows, newest first within each user, with duplicated rows and plays of
    tracks missing from the catalogue mixed in. Returns the mess rows it wrote."""
    rng = np.random.default_rng([seed, 6])
    t = world.tracks
    rates, n_rows = world.preset.mess, sum(len(h) for h, _ in plays)
    no_id = set(mess["plays_without_track_id"])
    no_artist_id = set(mess["artists_without_id"])
    rows: list[list[str]] = []
    for u, (history, times) in enumerate(plays):
        user_id = world.users.user_id[u]
        for track, when in zip(history[::-1], times[::-1], strict=True):
            a = int(t.artist[track])
            artist_id = "" if a in no_artist_id else world.artist_mbid[a]
            rows.append(
                [
                    user_id,
                    _iso(when),
                    artist_id,
                    world.artist_name[a],
                    "" if int(track) in no_id else t.track_id[track],
                    t.name[track],
                ]
            )
    duplicated = set(rng.choice(n_rows, rates.count("duplicate_plays", n_rows), replace=False))
    unknown = set(rng.choice(n_rows, rates.count("unknown_track_plays", n_rows), replace=False))
    written: dict[str, list[str]] = {"duplicate_rows": [], "unknown_track_rows": []}
    with open(path, "w", encoding="utf-8", newline="") as f:
        for r, row in enumerate(rows):
            if r in unknown:  # the same listener, a track the catalogue does not know
                extra = row[:4] + [new_mbid(rng), make_name(rng, "en", 2)]
                f.write("\t".join(extra) + "\n")
                written["unknown_track_rows"].append("\t".join(extra))
            f.write("\t".join(row) + "\n")
            if r in duplicated:
                f.write("\t".join(row) + "\n")
                written["duplicate_rows"].append("\t".join(row))
    return written


def _write_profiles(path: Path, world: World) -> None:
    u = world.users
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("#id\tgender\tage\tcountry\tregistered\n")
        for i, user_id in enumerate(u.user_id):
            age = "" if u.age[i] < 0 else str(u.age[i])
            f.write(f"{user_id}\t{u.gender[i]}\t{age}\t{u.country[i]}\t{u.registered[i]}\n")


def _write_tracks(path: Path, world: World, seed: int) -> None:
    """The catalogue with measured (noisy) numeric features; genre is the artist's
    genre as a tag and is sometimes missing, as in real tag data."""
    rng = np.random.default_rng([seed, 7])
    t, n = world.tracks, world.n_tracks
    valence = np.array(
        [{"happy": 0.8, "sad": 0.2, "energetic": 0.65, "calm": 0.45}[MOODS[m]] for m in t.mood]
    )
    density = world.rhythm.sum(axis=(1, 2))[t.genre] / 48.0
    columns = {
        "track_id": t.track_id,
        "track_name": t.name,
        "artist_name": [world.artist_name[a] for a in t.artist],
        "album_name": [world.album_name[a] for a in t.album],
        "genre": [
            world.genres[world.artist_genre[a]] if rng.random() > 0.1 else "" for a in t.artist
        ],
        "tempo": np.round(t.tempo * rng.normal(1, 0.03, n), 3),
        "energy": np.round(np.clip(t.energy + rng.normal(0, 0.08, n), 0, 1), 3),
        "valence": np.round(np.clip(valence + rng.normal(0, 0.12, n), 0, 1), 3),
        "danceability": np.round(np.clip(density + rng.normal(0, 0.1, n), 0, 1), 3),
        "acousticness": np.round(np.clip(1 - t.brightness + rng.normal(0, 0.1, n), 0, 1), 3),
        "key": t.key,
        "mode": [int(MOODS[m] in ("happy", "energetic")) for m in t.mood],
        "duration_ms": (t.duration_s * 1000).astype(np.int64),
    }
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for i in range(n):
            writer.writerow([columns[c][i] for c in columns])


def _write_lyrics(path: Path, world: World, mess: dict[str, list[int]], seed: int) -> int:
    """Instrumental tracks have no row; the mess adds empty and whitespace-only rows."""
    t = world.tracks
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(["track_id", "lyrics"])
        for i, track_id in enumerate(t.track_id):
            if t.instrumental[i]:
                continue
            rng = np.random.default_rng([seed, 8, i])
            a = int(t.artist[i])
            if i in mess["empty_lyrics"]:
                text = ""
            elif i in mess["blank_lyrics"]:
                text = "  \n\t "
            else:
                text = write_lyrics(
                    rng,
                    world.vocabulary,
                    world.artist_language[a],
                    world.genres[t.genre[i]],
                    MOODS[t.mood[i]],
                    world.artist_theme[a],
                )
            writer.writerow([track_id, text])
            rows += 1
    return rows


def generate_corpus(preset: Preset, seed: int, out: Path, workers: int | None = None) -> dict:
    """Generate the whole corpus into `out`; returns summary statistics."""
    started = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "covers").mkdir(exist_ok=True)
    world = build_world(preset, seed)
    model = ListeningModel()
    mess = _pick_mess(np.random.default_rng([seed, 9]), world, preset)
    counts = plays_per_user(world, preset.n_plays, seed)

    jobs = _media_jobs(world, out, mess, seed)
    media_bytes = 0
    with (
        ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(preset, seed)) as pool,
        log.progress() as bar,
    ):
        task = bar.add_task("listening", total=len(counts))
        plays = []
        users = range(len(counts))
        for result in pool.map(_simulate, users, counts, chunksize=_chunk(len(counts), workers)):
            plays.append(result)
            bar.advance(task)
        task = bar.add_task("audio + covers", total=len(jobs))
        for written in pool.map(_write_media, jobs, chunksize=_chunk(len(jobs), workers)):
            media_bytes += written
            bar.advance(task)

    play_mess = _write_plays(out / PLAYS_FILE, world, plays, mess, seed)
    _write_profiles(out / PROFILES_FILE, world)
    _write_tracks(out / "tracks.csv", world, seed)
    lyric_rows = _write_lyrics(out / "lyrics.csv", world, mess, seed)
    truth = {
        "corpus_version": CORPUS_VERSION,
        "preset": preset.name,
        "seed": seed,
        "listening_model": model.to_dict(),
        "world": world.to_truth(),
        "mess": {kind: [world.tracks.track_id[i] for i in idx] for kind, idx in mess.items()}
        | {"artists_without_id": [world.artist_name[a] for a in mess["artists_without_id"]]}
        | play_mess,
    }
    (out / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, sort_keys=True))
    n_plays = int(sum(len(h) for h, _ in plays))
    return {
        "corpus version": CORPUS_VERSION,
        "preset": preset.name,
        "seed": seed,
        "tracks": world.n_tracks,
        "new releases": int(world.tracks.is_new.sum()),
        "artists": len(world.artist_name),
        "albums": len(world.album_name),
        "genres": len(world.genres),
        "users": len(world.users.user_id),
        "plays": n_plays,
        "audio files": sum(j.audio_path is not None for j in jobs),
        "covers": sum(j.cover_path is not None for j in jobs),
        "lyrics rows": lyric_rows,
        "mess items": sum(len(v) for v in truth["mess"].values()),
        "media MB": round(media_bytes / 1e6, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "workers": workers,
    }
