"""The ffmpeg binary shipped by the imageio-ffmpeg wheel, driven through ffmpeg-python."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import ffmpeg
import imageio_ffmpeg
import numpy as np

from mirkit.errors import MirkitError

BITEXACT = {"fflags": "+bitexact", "flags:a": "+bitexact", "map_metadata": -1}
"""Output flags that make ffmpeg's files depend only on their input (no version tags,
no random stream serials), so generated corpora are byte-identical across runs."""

CODECS = {
    "mp3": {"acodec": "libmp3lame", "audio_bitrate": "128k", "compression_level": 9},
    "ogg": {"acodec": "libvorbis", "aq": 4},
    "flac": {"acodec": "flac"},
    "wav": {"acodec": "pcm_s16le"},
    "m4a": {"acodec": "aac", "audio_bitrate": "128k"},
}


@cache
def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg binary; no system ffmpeg is needed."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_audio(samples: np.ndarray, sample_rate: int, path: Path) -> None:
    """Write float samples ([n] mono or [n, channels]) to `path`; the codec follows the
    file extension (one of CODECS)."""
    fmt = path.suffix.lstrip(".")
    if fmt not in CODECS:
        raise ValueError(f"cannot encode {path.name}: extension must be one of {sorted(CODECS)}")
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    pcm = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    stream = ffmpeg.input("pipe:", format="f32le", ar=sample_rate, ac=channels)
    stream = stream.output(str(path), **CODECS[fmt], **BITEXACT)
    try:
        stream.run(cmd=ffmpeg_exe(), input=pcm, quiet=True, overwrite_output=True)
    except ffmpeg.Error as err:
        detail = _tail(err.stderr.decode(errors="replace"))
        raise RuntimeError(f"ffmpeg could not encode {path}: {detail}") from err


class AudioDecodeError(MirkitError, RuntimeError):
    """ffmpeg could not read a file as audio; the message carries ffmpeg's own reason."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    duration_s: float


_STREAM = re.compile(r"Audio: .*?, (\d+) Hz, (mono|stereo|[\d.]+ channels|[\d.]+\(\w+\))")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")


def probe_audio(path: Path) -> AudioInfo:
    """Sample rate, channel count and duration of an audio file, read from ffmpeg's own
    stream report (the wheel ships no ffprobe)."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
    )
    stream, duration = _STREAM.search(result.stderr), _DURATION.search(result.stderr)
    if stream is None or duration is None:
        raise AudioDecodeError(f"{path}: no audio stream ({_tail(result.stderr)})")
    layout = stream.group(2)
    channels = {"mono": 1, "stereo": 2}.get(layout) or int(float(re.match(r"[\d.]+", layout)[0]))
    h, m, s = duration.groups()
    return AudioInfo(int(stream.group(1)), channels, int(h) * 3600 + int(m) * 60 + float(s))


def decode_audio(
    path: Path, sample_rate: int, offset_s: float = 0.0, duration_s: float | None = None
) -> np.ndarray:
    """Decode to mono float32 at `sample_rate`, optionally a window [offset, offset+dur)."""
    stream = ffmpeg.input(str(path), ss=offset_s, **({"t": duration_s} if duration_s else {}))
    stream = stream.output("pipe:", format="f32le", ac=1, ar=sample_rate)
    try:
        pcm, _ = stream.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as err:
        raise AudioDecodeError(f"{path}: {_tail(err.stderr.decode(errors='replace'))}") from err
    samples = np.frombuffer(pcm, dtype="<f4")
    if samples.size == 0:
        raise AudioDecodeError(f"{path}: ffmpeg decoded no samples")
    return samples


def _tail(stderr: str, lines: int = 2) -> str:
    return " | ".join(stderr.strip().splitlines()[-lines:]) or "no output"
