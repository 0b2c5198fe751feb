"""The latent music world behind a synthetic corpus: genres, artists, albums, tracks, users.

Everything a pipeline must *discover* from content and plays is drawn here from one seeded
random generator and kept in a `World`, which round-trips through `truth.json` so that
oracle tools can rebuild it without ever reading the pipeline's outputs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from mirkit.synth.lyrics import LANGUAGES, make_name, make_vocabulary
from mirkit.synth.presets import Preset

GENRE_RING = [
    "rock",
    "metal",
    "punk",
    "electronic",
    "hiphop",
    "rnb",
    "pop",
    "latin",
    "folk",
    "classical",
    "jazz",
    "blues",
]
"""Genres on a ring: neighbours are related (blues closes the ring back to rock)."""

MOODS = ["happy", "sad", "energetic", "calm"]
MOOD_MAJOR = np.array([1, 0, 1, 0])
MOOD_TEMPO = np.array([1.05, 0.85, 1.15, 0.8])
MOOD_ENERGY = np.array([0.6, 0.3, 0.9, 0.2])

GENRE_TEMPO = {
    "rock": 120,
    "metal": 160,
    "punk": 175,
    "electronic": 126,
    "hiphop": 90,
    "rnb": 78,
    "pop": 110,
    "latin": 100,
    "folk": 95,
    "classical": 70,
    "jazz": 135,
    "blues": 84,
}
GENRE_INSTRUMENTAL = {"classical": 0.9, "electronic": 0.45, "jazz": 0.5}
GENRE_ROLLOFF = {  # harmonic amplitude ~ k**-rolloff: low = bright/distorted, high = soft
    "rock": 0.7,
    "metal": 0.3,
    "punk": 0.5,
    "electronic": 1.0,
    "hiphop": 1.6,
    "rnb": 1.8,
    "pop": 1.2,
    "latin": 1.4,
    "folk": 1.5,
    "classical": 1.1,
    "jazz": 2.2,
    "blues": 1.3,
}
GENRE_LANGUAGES = {
    "latin": {"es": 0.6, "pt": 0.3, "en": 0.1},
    "folk": {"en": 0.4, "fr": 0.2, "de": 0.15, "ru": 0.15, "es": 0.1},
    "pop": {"en": 0.6, "ja": 0.15, "es": 0.1, "fr": 0.1, "pt": 0.05},
    "metal": {"en": 0.6, "de": 0.25, "ru": 0.15},
}
DEFAULT_LANGUAGES = {"en": 0.8, "fr": 0.05, "de": 0.05, "es": 0.05, "ru": 0.03, "ja": 0.02}
LANGUAGE_COUNTRIES = {
    "en": ["United States", "United Kingdom", "Canada", "Australia"],
    "es": ["Spain", "Mexico", "Argentina"],
    "pt": ["Brazil", "Portugal"],
    "fr": ["France", "Belgium"],
    "de": ["Germany", "Austria"],
    "ru": ["Russian Federation"],
    "ja": ["Japan"],
}
MOTIFS = ["circles", "stripes", "triangles", "grid", "rings"]

RHYTHMS = {  # kick, snare, hat over 16 sixteenth-note steps
    "rock": ("x.......x.x.....", "....x.......x...", "x.x.x.x.x.x.x.x."),
    "metal": ("x.x.x.x.x.x.x.x.", "....x.......x...", "x...x...x...x..."),
    "punk": ("x...x...x...x...", "..x...x...x...x.", "xxxxxxxxxxxxxxxx"),
    "electronic": ("x...x...x...x...", "....x.......x...", "..x...x...x...x."),
    "hiphop": ("x......x..x.....", "....x.......x...", "x.x.x.x.x.x.x.x."),
    "rnb": ("x.....x...x.....", "....x.......x..x", "x.xxx.x.x.xxx.x."),
    "pop": ("x...x...x...x...", "....x.......x...", "x.x.x.x.x.x.x.x."),
    "latin": ("x..x..x.x..x..x.", "...x..x....x..x.", "x.x.x.x.x.x.x.x."),
    "folk": ("x.......x.......", "................", "....x.......x..."),
    "classical": ("................", "................", "................"),
    "jazz": ("x.........x.....", "......x.......x.", "x..x..x.x..x..x."),
    "blues": ("x.....x.x.....x.", "....x.......x...", "x..x..x..x..x..x"),
}
PROGRESSIONS = {  # scale degrees of the four chords of a bar cycle
    "rock": [0, 3, 4, 3],
    "metal": [0, 5, 6, 4],
    "punk": [0, 3, 4, 4],
    "electronic": [5, 3, 0, 4],
    "hiphop": [0, 0, 5, 5],
    "rnb": [1, 4, 0, 5],
    "pop": [0, 4, 5, 3],
    "latin": [0, 3, 4, 0],
    "folk": [0, 3, 0, 4],
    "classical": [0, 3, 4, 0],
    "jazz": [1, 4, 0, 0],
    "blues": [0, 0, 3, 0],
}
N_HARMONICS = 8
START_DATE = "2008-01-01T00:00:00Z"


def _pattern(text: str) -> list[int]:
    return [1 if c == "x" else 0 for c in text]


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[rng.choice(len(keys), p=p / p.sum())]


def genre_similarity(genres: list[str], width: float = 1.0) -> np.ndarray:
    """Row-normalised kernel over ring distance: related genres get most of the mass."""
    pos = np.array([GENRE_RING.index(g) for g in genres])
    d = np.abs(pos[:, None] - pos[None, :])
    d = np.minimum(d, len(GENRE_RING) - d)
    k = np.exp(-(d.astype(float) ** 2) / (2 * width**2))
    return k / k.sum(axis=1, keepdims=True)


@dataclass
class Tracks:
    """Per-track latent attributes, as parallel arrays indexed 0..n_tracks-1."""

    track_id: list[str]
    name: list[str]
    artist: np.ndarray
    album: np.ndarray
    genre: np.ndarray
    mood: np.ndarray
    tempo: np.ndarray
    key: np.ndarray
    energy: np.ndarray
    brightness: np.ndarray
    duration_s: np.ndarray
    popularity: np.ndarray
    release_day: np.ndarray
    is_new: np.ndarray
    instrumental: np.ndarray


@dataclass
class Users:
    user_id: list[str]
    taste: np.ndarray  # [U, G] genre preferences
    mood_pref: np.ndarray  # [U, M]
    language: list[str]  # the user's own language (besides English)
    activity: np.ndarray  # share of all plays
    first_day: np.ndarray
    last_day: np.ndarray
    gender: list[str]
    age: list[int]
    country: list[str]
    registered: list[str]


@dataclass
class World:
    seed: int
    preset: Preset
    genres: list[str]
    genre_sim: np.ndarray
    rhythm: np.ndarray  # [G, 3, 16]
    progression: np.ndarray  # [G, 4]
    vocabulary: dict  # language -> {"common", "genre": {g: words}, "mood": {m: words}}
    artist_name: list[str]
    artist_mbid: list[str]
    artist_genre: np.ndarray
    artist_language: list[str]
    artist_timbre: np.ndarray  # [A, N_HARMONICS]
    artist_attack: np.ndarray
    artist_decay: np.ndarray
    artist_hue: np.ndarray  # hue offset of the artist's covers
    artist_motif: list[str]
    artist_theme: list[list[str]]  # words the artist keeps coming back to
    album_name: list[str]
    album_artist: np.ndarray
    album_release_day: np.ndarray
    tracks: Tracks
    users: Users

    @property
    def n_tracks(self) -> int:
        return len(self.tracks.track_id)

    def to_truth(self) -> dict[str, Any]:
        """A JSON-ready dict from which `World.from_truth` rebuilds this world exactly."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "preset":
                value = value.to_dict()
            elif f.name in ("tracks", "users"):
                value = {g.name: _jsonable(getattr(value, g.name)) for g in fields(value)}
            out[f.name] = _jsonable(value)
        return out

    @classmethod
    def from_truth(cls, truth: dict[str, Any]) -> World:
        from mirkit.synth.presets import MessRates

        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            value = truth[f.name]
            if f.name == "preset":
                value = Preset(
                    **{
                        **value,
                        "mess": MessRates(**value["mess"]),
                        "audio_formats": tuple(value["audio_formats"]),
                        "sample_rates": tuple(value["sample_rates"]),
                    }
                )
            elif f.name in ("tracks", "users"):
                kind = Tracks if f.name == "tracks" else Users
                value = kind(**{g.name: _restore(value[g.name]) for g in fields(kind)})
            else:
                value = _restore(value)
            kwargs[f.name] = value
        return cls(**kwargs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    return value


def _restore(value: Any) -> Any:
    if isinstance(value, dict) and "__array__" in value:
        return np.array(value["__array__"], dtype=value["dtype"])
    return value


def new_mbid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def build_world(preset: Preset, seed: int) -> World:
    """Draw a whole world for `preset` from `seed` (pure function of its arguments)."""
    rng = np.random.default_rng([seed, 0])
    spread = np.linspace(0, len(GENRE_RING), preset.n_genres, endpoint=False)
    genres = [GENRE_RING[int(round(i))] for i in spread]
    vocabulary = make_vocabulary(rng, genres, MOODS)

    artists = _draw_artists(rng, preset, genres)
    albums, tracks = _draw_catalogue(rng, preset, genres, artists)
    users = _draw_users(rng, preset, genres)
    return World(
        seed=seed,
        preset=preset,
        genres=genres,
        genre_sim=genre_similarity(genres),
        rhythm=np.array([[_pattern(p) for p in RHYTHMS[g]] for g in genres], dtype=np.int64),
        progression=np.array([PROGRESSIONS[g] for g in genres], dtype=np.int64),
        vocabulary=vocabulary,
        album_name=albums["name"],
        album_artist=albums["artist"],
        album_release_day=albums["release_day"],
        tracks=tracks,
        users=users,
        **{f"artist_{k}": v for k, v in artists.items()},
    )


def _draw_artists(rng: np.random.Generator, preset: Preset, genres: list[str]) -> dict:
    n_artists = max(len(genres) * 2, preset.n_tracks // 8)
    genre_weight = rng.dirichlet(np.full(len(genres), 4.0))
    genre = rng.choice(len(genres), size=n_artists, p=genre_weight)
    genre[: len(genres)] = np.arange(len(genres))  # every genre has an artist
    language = [_choice(rng, GENRE_LANGUAGES.get(genres[g], DEFAULT_LANGUAGES)) for g in genre]
    every_language = ["en", "ru", "ja", "es", "fr", "de", "pt"]  # non-Latin scripts first
    language[: len(every_language)] = every_language[:n_artists]
    k = np.arange(1, N_HARMONICS + 1)
    rolloff = np.array([GENRE_ROLLOFF[genres[g]] for g in genre])
    timbre = k[None, :] ** -rolloff[:, None] * rng.lognormal(0, 0.35, (n_artists, N_HARMONICS))
    timbre /= timbre.sum(axis=1, keepdims=True)
    return {
        "name": _unique_names(rng, language, max_words=2),
        "mbid": [new_mbid(rng) for _ in range(n_artists)],
        "genre": genre,
        "language": language,
        "timbre": timbre,
        "attack": rng.uniform(0.003, 0.04, n_artists),
        "decay": rng.uniform(0.12, 0.9, n_artists),
        "hue": rng.normal(0, 0.05, n_artists),
        "motif": [MOTIFS[i] for i in rng.integers(0, len(MOTIFS), n_artists)],
        "theme": [[make_name(rng, lang, words=1).lower() for _ in range(6)] for lang in language],
    }


def _unique_names(rng: np.random.Generator, languages: list[str], max_words: int) -> list[str]:
    """Distinct names, so that artist and (artist, title) identify a track even in play
    rows without ids."""
    names: list[str] = []
    taken: set[str] = set()
    for lang in languages:
        name = make_name(rng, lang, words=int(rng.integers(1, max_words + 1)))
        while name.casefold() in taken:
            name = make_name(rng, lang, words=int(rng.integers(1, max_words + 1)))
        taken.add(name.casefold())
        names.append(name)
    return names


def _draw_catalogue(
    rng: np.random.Generator, preset: Preset, genres: list[str], artists: dict
) -> tuple[dict, Tracks]:
    """Albums of 2-12 tracks until the catalogue is full; the last ~12% of days bring new
    releases, which have few or no plays before a global time split."""
    n_artists = len(artists["genre"])
    artist_pop = rng.pareto(1.5, n_artists) + 1.0
    new_from = int(preset.days * 0.88)
    album_artist, album_day, album_name = [], [], []
    rows: dict[str, list] = {k: [] for k in ("artist", "album", "mood", "genre", "is_new")}
    while len(rows["artist"]) < preset.n_tracks:
        album = len(album_artist)
        # the first artists (one per genre, every language) all get an album
        a = album if album < min(n_artists, len(LANGUAGES)) else int(rng.integers(0, n_artists))
        is_new = rng.random() < 0.12 or album == 1  # at least one new album
        day = (
            int(rng.integers(new_from, preset.days))
            if is_new
            else int(rng.integers(-3 * preset.days, new_from - 7))
        )
        album_artist.append(a)
        album_day.append(day)
        album_name.append(make_name(rng, artists["language"][a], words=int(rng.integers(1, 4))))
        album_mood = rng.integers(0, len(MOODS))
        for _ in range(int(rng.integers(2, 13))):
            rows["artist"].append(a)
            rows["album"].append(album)
            rows["mood"].append(album_mood if rng.random() < 0.6 else rng.integers(0, len(MOODS)))
            g = artists["genre"][a]
            if rng.random() < 0.12:  # a track that leans to a related genre
                g = int(rng.choice(len(genres), p=genre_similarity(genres)[g]))
            rows["genre"].append(g)
            rows["is_new"].append(is_new)
    n = preset.n_tracks
    artist = np.array(rows["artist"][:n])
    genre = np.array(rows["genre"][:n])
    mood = np.array(rows["mood"][:n])
    base_tempo = np.array([GENRE_TEMPO[genres[g]] for g in genre])
    instrumental_p = np.array([GENRE_INSTRUMENTAL.get(genres[g], 0.08) for g in genre])
    tracks = Tracks(
        track_id=[new_mbid(rng) for _ in range(n)],
        name=_unique_names(rng, [artists["language"][a] for a in artist], max_words=3),
        artist=artist,
        album=np.array(rows["album"][:n]),
        genre=genre,
        mood=mood,
        tempo=np.round(base_tempo * MOOD_TEMPO[mood] * rng.normal(1, 0.06, n), 1),
        key=rng.integers(0, 12, n),
        energy=np.clip(MOOD_ENERGY[mood] + rng.normal(0, 0.12, n), 0.02, 0.98),
        brightness=np.clip(rng.beta(2, 2, n) * 0.6 + 0.4 * MOOD_ENERGY[mood], 0.02, 0.98),
        duration_s=np.round(rng.uniform(140, 380, n), 1),
        popularity=artist_pop[artist] * rng.lognormal(0, 0.8, n),
        release_day=np.array(album_day)[np.array(rows["album"][:n])],
        is_new=np.array(rows["is_new"][:n]),
        instrumental=rng.random(n) < instrumental_p,
    )
    albums = {
        "artist": np.array(album_artist),
        "release_day": np.array(album_day),
        "name": album_name,
    }
    return albums, tracks


def _draw_users(rng: np.random.Generator, preset: Preset, genres: list[str]) -> Users:
    n = preset.n_users
    n_genres = len(genres)
    taste = rng.dirichlet(np.full(n_genres, 0.35), size=n) + 1e-3
    taste /= taste.sum(axis=1, keepdims=True)
    language = [
        _choice(
            rng, {"en": 0.55, "es": 0.1, "pt": 0.07, "fr": 0.08, "de": 0.08, "ru": 0.06, "ja": 0.06}
        )
        for _ in range(n)
    ]
    activity = rng.lognormal(0, 0.9, n)
    span = rng.uniform(0.25, 1.0, n) * preset.days
    last_day = np.where(
        rng.random(n) < 0.8,
        preset.days - rng.uniform(0, 0.05, n) * preset.days,
        rng.uniform(span, preset.days),
    )
    first_day = np.maximum(0.0, last_day - span)
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    return Users(
        user_id=[f"user_{i + 1:06d}" for i in range(n)],
        taste=taste,
        mood_pref=rng.dirichlet(np.full(len(MOODS), 1.5), size=n),
        language=language,
        activity=activity / activity.sum(),
        first_day=first_day,
        last_day=last_day,
        gender=[str(rng.choice(["m", "f", ""], p=[0.55, 0.38, 0.07])) for _ in range(n)],
        age=[int(rng.integers(15, 60)) if rng.random() < 0.75 else -1 for _ in range(n)],
        country=[str(rng.choice(LANGUAGE_COUNTRIES[lang])) for lang in language],
        registered=[
            f"{months[int(rng.integers(0, 12))]} {int(rng.integers(1, 29))}, "
            f"{int(rng.integers(2003, 2008))}"
            for _ in range(n)
        ],
    )
