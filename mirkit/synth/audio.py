"""Structured audio for synthetic tracks: drums, chords and a melody.

Genre sets the rhythm pattern, chord progression and tempo range; the artist sets the
instrument timbre (harmonic amplitudes, attack, decay); the track sets tempo, key, mode
(from mood), energy and brightness. Noise and per-track gain keep any one cue imperfect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
TABLE_SIZE = 2048


@dataclass(frozen=True)
class AudioSpec:
    """What one track sounds like; plain numbers so it pickles cheaply to workers."""

    tempo: float
    key: int
    major: bool
    energy: float
    brightness: float
    timbre: tuple[float, ...]
    attack: float
    decay: float
    rhythm: tuple[tuple[int, ...], ...]  # kick, snare, hat over 16 steps
    progression: tuple[int, ...]
    seventh_chords: bool


def _midi_hz(note: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=float) - 69.0) / 12.0)


def _wavetable(spec: AudioSpec) -> np.ndarray:
    phase = np.arange(TABLE_SIZE) / TABLE_SIZE
    tilt = (0.3 + 0.7 * spec.brightness) ** np.arange(len(spec.timbre))
    amps = np.array(spec.timbre) * tilt
    table = sum(a * np.sin(2 * np.pi * (k + 1) * phase) for k, a in enumerate(amps))
    return table / (np.abs(table).max() + 1e-9)


def _drum(kind: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.25 * sr)) / sr
    if kind == 0:  # kick: falling sine
        freq = 50 + 70 * np.exp(-t / 0.03)
        return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)
    noise = rng.standard_normal(len(t))
    if kind == 1:  # snare: noise and a body tone
        return (0.7 * noise + 0.5 * np.sin(2 * np.pi * 185 * t)) * np.exp(-t / 0.07)
    return np.diff(noise, prepend=0.0) * 0.5 * np.exp(-t / 0.015)  # hat: high noise


def _place(out: np.ndarray, sound: np.ndarray, start: int, gain: float) -> None:
    end = min(len(out), start + len(sound))
    if start < end:
        out[start:end] += gain * sound[: end - start]


def render(
    spec: AudioSpec, sample_rate: int, seconds: float, rng: np.random.Generator
) -> np.ndarray:
    """A mono float32 waveform in [-1, 1]."""
    n = int(seconds * sample_rate)
    out = np.zeros(n)
    step = 60.0 / spec.tempo / 4  # a sixteenth note
    n_steps = int(seconds / step) + 1
    drums = [_drum(k, sample_rate, rng) for k in range(3)]
    drum_gain = 0.25 + 0.6 * spec.energy
    for s in range(n_steps):
        start = int(s * step * sample_rate)
        for kind in range(3):
            if spec.rhythm[kind][s % 16]:
                _place(out, drums[kind], start, drum_gain * (0.6 if kind == 2 else 1.0))

    table = _wavetable(spec)
    scale = MAJOR if spec.major else MINOR
    beat = 4 * step
    note_len = int(min(beat * 4, spec.decay * 5) * sample_rate)
    t = np.arange(note_len) / sample_rate
    envelope = np.minimum(t / spec.attack, 1.0) * np.exp(-t / spec.decay)

    def tone(midi: float, start: int, gain: float) -> None:
        phase = np.cumsum(np.full(note_len, _midi_hz(midi) / sample_rate)) * TABLE_SIZE
        _place(out, table[phase.astype(np.int64) % TABLE_SIZE] * envelope, start, gain)

    n_beats = int(seconds / beat) + 1
    chord_every = 1 if spec.energy > 0.5 else 2
    for b in range(n_beats):
        start = int(b * beat * sample_rate)
        degree = spec.progression[(b // 4) % len(spec.progression)]
        if b % chord_every == 0:
            size = 4 if spec.seventh_chords else 3
            for i in range(size):
                d = degree + 2 * i
                note = 48 + spec.key + scale[d % 7] + 12 * (d // 7)
                tone(note, start, 0.22)
        if rng.random() < 0.3 + 0.6 * spec.energy:  # melody in a higher octave
            d = degree + int(rng.integers(0, 5))
            tone(72 + spec.key + scale[d % 7] + 12 * (d // 7), start, 0.3)

    out += rng.normal(0, 0.01 + 0.03 * rng.random(), n)
    out *= rng.uniform(0.5, 0.9) / (np.abs(out).max() + 1e-9)
    return out.astype(np.float32)
