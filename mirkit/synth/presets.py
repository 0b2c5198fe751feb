"""Sizes and mess rates of the built-in synthetic corpora."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

CORPUS_VERSION = 1
"""Bumped whenever the generator's output for a given preset and seed changes."""


@dataclass(frozen=True)
class MessRates:
    """Fractions of tracks (or play rows) that carry each kind of real-world mess.

    Every kind is present at least once, whatever the corpus size.
    """

    corrupt_audio: float = 0.005
    missing_audio: float = 0.01
    missing_cover: float = 0.03
    empty_lyrics: float = 0.005
    blank_lyrics: float = 0.005
    plays_without_track_id: float = 0.03
    artists_without_id: float = 0.05
    duplicate_plays: float = 0.002
    unknown_track_plays: float = 0.001

    def count(self, kind: str, population: int) -> int:
        return max(1, round(getattr(self, kind) * population))


@dataclass(frozen=True)
class Preset:
    name: str
    n_tracks: int
    n_users: int
    n_plays: int
    n_genres: int
    audio_seconds: float
    days: int
    audio_formats: tuple[str, ...] = ("mp3", "ogg", "flac", "wav")
    sample_rates: tuple[int, ...] = (22050, 44100)
    mess: MessRates = field(default_factory=MessRates)

    def to_dict(self) -> dict:
        return asdict(self)


ALL_FORMATS = ("mp3", "ogg", "flac", "wav", "m4a")

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny", n_tracks=60, n_users=30, n_plays=1500, n_genres=4, audio_seconds=5.0, days=180
    ),
    "demo": Preset(
        "demo",
        n_tracks=2000,
        n_users=500,
        n_plays=60_000,
        n_genres=12,
        audio_seconds=10.0,
        days=540,
        audio_formats=ALL_FORMATS,
    ),
    "large": Preset(
        "large",
        n_tracks=20_000,
        n_users=5000,
        n_plays=2_000_000,
        n_genres=12,
        audio_seconds=10.0,
        days=720,
        audio_formats=ALL_FORMATS,
    ),
}
