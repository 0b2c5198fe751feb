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
from mirkit.files import not_a_regular_file

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


FFMPEG_TIMEOUT_S = 120
"""Longest an ffmpeg call may run: a file that makes it hang becomes a failure row."""


def _input_url(path: Path) -> str:
    """`path` as ffmpeg input: a regular file only (a FIFO or device would block), named
    through the file: protocol, so a name such as `concat:...`, `http:...` or `-i` is a
    file name and never a protocol or an option."""
    problem = not_a_regular_file(path)
    if problem:
        raise AudioDecodeError(f"{path.name}: {problem}")
    return "file:" + str(Path(path).resolve())


def _run(command: list[str], path: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        raise AudioDecodeError(f"{path.name}: ffmpeg ran over {FFMPEG_TIMEOUT_S} s") from err


def probe_audio(path: Path) -> AudioInfo:
    """Sample rate, channel count and duration of an audio file, read from ffmpeg's own
    stream report (the wheel ships no ffprobe)."""
    result = _run([ffmpeg_exe(), "-hide_banner", "-i", _input_url(path)], path)
    report = result.stderr.decode(errors="replace")
    stream, duration = _STREAM.search(report), _DURATION.search(report)
    if stream is None or duration is None:
        raise AudioDecodeError(f"{path}: no audio stream ({_tail(report)})")
    layout = stream.group(2)
    channels = {"mono": 1, "stereo": 2}.get(layout) or int(float(re.match(r"[\d.]+", layout)[0]))
    h, m, s = duration.groups()
    return AudioInfo(int(stream.group(1)), channels, int(h) * 3600 + int(m) * 60 + float(s))


def decode_audio(
    path: Path, sample_rate: int, offset_s: float = 0.0, duration_s: float | None = None
) -> np.ndarray:
    """Decode to mono float32 at `sample_rate`, optionally a window [offset, offset+dur)."""
    window = {"t": duration_s} if duration_s else {}
    stream = ffmpeg.input(_input_url(path), ss=offset_s, **window)
    stream = stream.output("pipe:", format="f32le", ac=1, ar=sample_rate)
    result = _run(stream.compile(cmd=ffmpeg_exe()), path)
    if result.returncode != 0:
        raise AudioDecodeError(f"{path}: {_tail(result.stderr.decode(errors='replace'))}")
    samples = np.frombuffer(result.stdout, dtype="<f4")
    if samples.size == 0:
        raise AudioDecodeError(f"{path}: ffmpeg decoded no samples")
    return samples


def _tail(stderr: str, lines: int = 2) -> str:
    return " | ".join(stderr.strip().splitlines()[-lines:]) or "no output"
