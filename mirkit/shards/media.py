"""Per-item content processing: audio -> log-mel, cover -> square JPEG.

Everything that shapes the stored content is in `ContentConfig`, which the manifest
records and fingerprints, so a trainer can tell whether two shard sets hold the same
kind of features.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mirkit.errors import MirkitError
from mirkit.ffmpeg import decode_audio
from mirkit.files import not_a_regular_file

AUDIO_SUFFIXES = (".mp3", ".ogg", ".flac", ".wav", ".m4a")
COVER_SUFFIXES = (".jpg", ".jpeg", ".png")


class ContentError(MirkitError, RuntimeError):
    """A file that exists but cannot be turned into features (recorded, not raised)."""


@dataclass(frozen=True)
class ContentConfig:
    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    top_db: float = 80.0
    clip_offset_s: float = 30.0
    clip_seconds: float = 30.0
    image_size: int = 224
    jpeg_quality: int = 90
    max_tokens: int = 512

    def to_dict(self) -> dict:
        return asdict(self) | {"clip_policy": self.clip_policy}

    @property
    def clip_policy(self) -> str:
        return (
            f"{self.clip_seconds:g} s from {self.clip_offset_s:g} s; tracks shorter than "
            f"{self.clip_offset_s + self.clip_seconds:g} s give their last "
            f"{self.clip_seconds:g} s, or all of it when shorter still"
        )


WINDOW_TOLERANCE_S = 0.1
"""Decoders may return a few ms less than asked (codec delay, frame rounding): a track
that falls short of the window by less than this still gets the window, zero-padded."""


def clip_window(config: ContentConfig, decoded_seconds: float) -> tuple[float, float]:
    """(start, length) in seconds of the clip kept from a track decoded up to
    offset + length (or to its end, when shorter)."""
    wanted = config.clip_offset_s + config.clip_seconds
    if decoded_seconds >= wanted - WINDOW_TOLERANCE_S:
        return config.clip_offset_s, config.clip_seconds
    length = min(config.clip_seconds, decoded_seconds)
    return decoded_seconds - length, length


@cache
def _mel_transform(config: ContentConfig):
    import torch
    import torchaudio

    torch.set_num_threads(1)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        power=2.0,
    )
    to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=config.top_db)
    return lambda wave: to_db(mel(torch.from_numpy(wave)))


def audio_clip(path: Path, config: ContentConfig) -> tuple[np.ndarray, tuple[float, float]]:
    """Decode (mono, resampled) the first offset + length seconds, keep the clip window.
    One ffmpeg call per file; the same call is the benchmark's decode floor."""
    wanted = config.clip_offset_s + config.clip_seconds
    wave = decode_audio(path, config.sample_rate, 0.0, wanted)
    start, length = clip_window(config, len(wave) / config.sample_rate)
    first, size = round(start * config.sample_rate), round(length * config.sample_rate)
    clip = wave[first : first + size]
    if len(clip) < size:
        clip = np.pad(clip, (0, size - len(clip)))
    return clip, (start, length)


def log_mel(wave: np.ndarray, config: ContentConfig) -> np.ndarray:
    """float16 log-mel in dB, [n_mels, frames]."""
    if len(wave) < config.n_fft // 2 + 1:
        raise ContentError(f"audio too short for a spectrogram ({len(wave)} samples)")
    return _mel_transform(config)(np.array(wave, dtype=np.float32)).numpy().astype(np.float16)


def cover_jpeg(path: Path, config: ContentConfig) -> bytes:
    """Decode, convert to RGB, centre-crop to a square, resize, encode as JPEG."""
    problem = not_a_regular_file(path)
    if problem:
        raise ContentError(f"cover {problem}")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise ContentError(f"cannot decode image: {err}") from err
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((config.image_size, config.image_size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=config.jpeg_quality)
    return out.getvalue()
