"""The tiny synthetic corpus: deterministic, in the real input formats, with every mess."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import pytest
from conftest import shared_data
from PIL import Image

from mirkit.ffmpeg import AudioDecodeError, decode_audio, probe_audio
from mirkit.synth.corpus import PLAYS_FILE, PROFILES_FILE, generate_corpus
from mirkit.synth.presets import PRESETS
from mirkit.synth.world import World, build_world

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
MBID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
USER = re.compile(r"^user_\d{6}$")


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_plays(root: Path) -> list[list[str]]:
    with open(root / PLAYS_FILE, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


def read_tracks(root: Path) -> list[dict[str, str]]:
    with open(root / "tracks.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def read_lyrics(root: Path) -> dict[str, str]:
    with open(root / "lyrics.csv", encoding="utf-8", newline="") as f:
        return {row["track_id"]: row["lyrics"] for row in csv.DictReader(f)}


def truth(root: Path) -> dict:
    return json.loads((root / "truth.json").read_text(encoding="utf-8"))


def test_same_seed_gives_identical_files_whatever_the_workers(tiny_corpus, tmp_path):
    generate_corpus(PRESETS["tiny"], seed=0, out=tmp_path / "again", workers=1)
    assert digests(tmp_path / "again") == digests(tiny_corpus)


def test_another_seed_gives_other_files(tiny_corpus, tmp_path):
    generate_corpus(PRESETS["tiny"], seed=1, out=tmp_path / "other", workers=2)
    first, other = digests(tiny_corpus), digests(tmp_path / "other")
    assert first.keys() != other.keys()  # file names carry new track ids
    assert first["tracks.csv"] != other["tracks.csv"]
    assert first[PLAYS_FILE] != other[PLAYS_FILE]


def test_plays_tsv_has_the_lastfm_1k_layout(tiny_corpus):
    rows = read_plays(tiny_corpus)
    assert len(rows) >= PRESETS["tiny"].n_plays
    for user, when, artist_id, artist, track_id, title in rows:
        assert USER.match(user) and ISO.match(when)
        assert artist_id == "" or MBID.match(artist_id)
        assert artist and title
        assert track_id == "" or MBID.match(track_id)
    users = sorted({r[0] for r in rows})
    assert users == [f"user_{i:06d}" for i in range(1, PRESETS["tiny"].n_users + 1)]
    for user in users:  # newest first within a user, as in the real file
        times = [r[1] for r in rows if r[0] == user]
        assert times == sorted(times, reverse=True)


def test_plays_tsv_matches_the_real_sample(tiny_corpus):
    sample = shared_data("lastfm-1k-sample") / "userid-timestamp-artid-artname-traid-traname.tsv"
    with open(sample, encoding="utf-8") as f:
        real = [line.rstrip("\n").split("\t") for line in f][:200]
    ours = read_plays(tiny_corpus)[:200]
    for rows in (real, ours):
        assert {len(r) for r in rows} == {6}
        assert all(USER.match(r[0]) and ISO.match(r[1]) for r in rows)
        assert all(r[2] == "" or MBID.match(r[2]) for r in rows)
        assert all(r[4] == "" or MBID.match(r[4]) for r in rows)
    assert (tiny_corpus / PLAYS_FILE).read_bytes()[:3] != b"\xef\xbb\xbf"  # no BOM, no header
    assert not ours[0][0].startswith("#")


def test_profiles_tracks_lyrics_parse(tiny_corpus):
    lines = (tiny_corpus / PROFILES_FILE).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#id\tgender\tage\tcountry\tregistered"
    assert len(lines) == PRESETS["tiny"].n_users + 1
    assert all(len(line.split("\t")) == 5 for line in lines)

    tracks = read_tracks(tiny_corpus)
    assert len(tracks) == PRESETS["tiny"].n_tracks
    assert list(tracks[0])[:5] == ["track_id", "track_name", "artist_name", "album_name", "genre"]
    for row in tracks:
        assert MBID.match(row["track_id"])
        assert 40 < float(row["tempo"]) < 250 and 0 <= float(row["energy"]) <= 1
        assert int(row["duration_ms"]) > 0

    lyrics = read_lyrics(tiny_corpus)
    scripts = "".join(lyrics.values())
    assert re.search("[а-я]", scripts) and re.search("[\u3040-\u309f]", scripts)  # Cyrillic, kana
    assert re.search("[áéíóúñçãäöüß]", scripts)  # accented Latin
    instrumental = [
        t
        for t, is_instr in zip(
            truth(tiny_corpus)["world"]["tracks"]["track_id"],
            truth(tiny_corpus)["world"]["tracks"]["instrumental"]["__array__"],
            strict=True,
        )
        if is_instr
    ]
    assert instrumental and not set(instrumental) & set(lyrics)


def test_audio_is_a_mix_of_formats_rates_and_channels(tiny_corpus):
    corrupt = set(truth(tiny_corpus)["mess"]["corrupt_audio"])
    infos, formats = [], set()
    for path in sorted((tiny_corpus / "audio").iterdir()):
        formats.add(path.suffix)
        if path.stem in corrupt:
            continue
        info = probe_audio(path)
        infos.append((info.sample_rate, info.channels))
        assert info.duration_s == pytest.approx(PRESETS["tiny"].audio_seconds, abs=0.1)
    assert formats == {".mp3", ".ogg", ".flac", ".wav"}
    assert {rate for rate, _ in infos} == {22050, 44100}
    assert {ch for _, ch in infos} == {1, 2}
    wave = decode_audio(next((tiny_corpus / "audio").glob("*.flac")), 22050)
    assert 0.05 < abs(wave).max() <= 1.0 and wave.std() > 0.01


def test_covers_are_300px_jpeg_or_png(tiny_corpus):
    suffixes = set()
    for path in (tiny_corpus / "covers").iterdir():
        with Image.open(path) as image:
            assert image.size == (300, 300)
            assert image.format == {".jpg": "JPEG", ".png": "PNG"}[path.suffix]
        suffixes.add(path.suffix)
    assert suffixes == {".jpg", ".png"}


def test_every_kind_of_mess_is_present(tiny_corpus):
    mess = truth(tiny_corpus)["mess"]
    audio = {p.stem: p for p in (tiny_corpus / "audio").iterdir()}
    covers = {p.stem for p in (tiny_corpus / "covers").iterdir()}
    lyrics = read_lyrics(tiny_corpus)
    catalogue = {t["track_id"]: t for t in read_tracks(tiny_corpus)}
    rows = ["\t".join(r) for r in read_plays(tiny_corpus)]

    with pytest.raises(AudioDecodeError):
        decode_audio(audio[mess["corrupt_audio"][0]], 22050)
    assert mess["missing_audio"] and not set(mess["missing_audio"]) & audio.keys()
    assert mess["missing_cover"] and not set(mess["missing_cover"]) & covers
    assert [lyrics[t] for t in mess["empty_lyrics"]] == [""] * len(mess["empty_lyrics"])
    assert all(lyrics[t] and not lyrics[t].strip() for t in mess["blank_lyrics"])
    for row in mess["duplicate_rows"]:
        at = rows.index(row)
        assert rows[at + 1] == row
    for row in mess["unknown_track_rows"]:
        assert row in rows and row.split("\t")[4] not in catalogue
    id_less_artists = {r.split("\t")[3] for r in rows if r.split("\t")[2] == ""}
    assert id_less_artists and id_less_artists <= set(mess["artists_without_id"])
    no_id = set(mess["plays_without_track_id"])
    by_title = {(t["artist_name"], t["track_name"]): t["track_id"] for t in catalogue.values()}
    empty_id_rows = [r.split("\t") for r in rows if r.split("\t")[4] == ""]
    assert empty_id_rows and {by_title[(r[3], r[5])] for r in empty_id_rows} == no_id


def test_truth_rebuilds_the_world(tiny_corpus):
    rebuilt = World.from_truth(truth(tiny_corpus)["world"])
    direct = build_world(PRESETS["tiny"], seed=0)
    assert rebuilt.to_truth() == direct.to_truth()
    assert truth(tiny_corpus)["corpus_version"] >= 1
