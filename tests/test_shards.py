"""`mirkit shards`: raw corpus -> shards -> read back, resumable, splittable, appendable,
verifiable, with every problem recorded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from conftest import CONTENT, corpus_inputs, options, shared_data
from transformers import AutoTokenizer

from mirkit.cli import main
from mirkit.shards import layout
from mirkit.shards import writer as shard_writer
from mirkit.shards.build import BuildConflict, BuildInputs, build_shards
from mirkit.shards.inputs import InputError, PlayColumns, normalise, read_plays
from mirkit.shards.manifest import load_manifest
from mirkit.shards.media import ContentConfig, audio_clip, log_mel
from mirkit.shards.reader import decode_sample, read_samples
from mirkit.shards.verify import verify
from mirkit.synth.corpus import PLAYS_FILE


def digests(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file a build wrote (not the play-array cache a training run adds, nor the
    lock files that keep two builds of one part apart)."""
    skip = (*skip, ".cache", "locks")
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part in skip for part in p.parts)
    }


def all_samples(shards_dir: Path) -> dict[int, dict]:
    samples = {}
    for tar in sorted((shards_dir / layout.ITEMS).glob("*.tar")):
        for sample in read_samples([tar]):
            decoded = decode_sample(sample)
            samples[int(decoded["key"])] = decoded
    return samples


def test_round_trip(tiny_corpus, tiny_shards):
    truth = json.loads((tiny_corpus / "truth.json").read_text())
    catalog = pl.read_parquet(tiny_shards / layout.CATALOG)
    samples = all_samples(tiny_shards)
    assert catalog["item_id"].to_list() == list(range(1, 61))  # dense, 0 is padding
    assert sorted(samples) == catalog["item_id"].to_list()  # nothing lost, nothing twice
    assert set(catalog["track_key"]) == set(truth["world"]["tracks"]["track_id"])

    lyrics = pl.read_csv(tiny_corpus / "lyrics.csv")
    raw = dict(zip(lyrics["track_id"], lyrics["lyrics"].fill_null(""), strict=True))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_shards / layout.TOKENIZER))
    for row in catalog.iter_rows(named=True):
        sample = samples[row["item_id"]]
        assert sample["meta"]["track_key"] == row["track_key"]
        assert sample["meta"]["title"] == row["title"]
        if row["has_audio"]:
            assert sample["mel"].dtype == np.float16 and sample["mel"].shape[0] == 64
            frames = 1 + int(CONTENT.clip_seconds * CONTENT.sample_rate) // CONTENT.hop_length
            assert sample["mel"].shape[1] == frames
            assert sample["meta"]["audio_window_s"] == [1.0, 3.0]
        if row["has_lyrics"]:
            assert sample["lyrics"] == raw[row["track_id"]]
            assert sample["tokens"].dtype == np.int32
            decoded = tokenizer.decode(sample["tokens"], skip_special_tokens=True)
            assert (
                decoded.split() == normalise(sample["lyrics"]).split()
                or decoded.split() == sample["lyrics"].split()
            )
        if row["has_cover"]:
            assert sample["cover"].size == (64, 64) and sample["cover"].mode == "RGB"
    assert catalog["tempo"].dtype == pl.Float32  # numeric track features are kept

    plays = pl.read_parquet(tiny_shards / layout.INTERACTIONS)
    assert plays.columns == ["user_id", "user_idx", "item_id", "timestamp"]
    assert plays.sort(["user_idx", "timestamp"], maintain_order=True).equals(plays)
    assert len(plays) == truth["world"]["preset"]["n_plays"]  # duplicates and unknowns out
    users = pl.read_parquet(tiny_shards / layout.USERS)
    assert {"gender", "age", "country"} <= set(users.columns) and len(users) == 30


def test_failures_are_recorded_and_items_kept(tiny_corpus, tiny_shards):
    mess = json.loads((tiny_corpus / "truth.json").read_text())["mess"]
    catalog = pl.read_parquet(tiny_shards / layout.CATALOG)
    failures = pl.read_parquet(tiny_shards / layout.FAILURES)

    def reasons(key: str) -> set[str]:
        return set(failures.filter(pl.col("key") == key)["reason"])

    flags = {r["track_key"]: r for r in catalog.iter_rows(named=True)}
    for key in mess["corrupt_audio"]:
        assert "audio could not be decoded" in reasons(key) and not flags[key]["has_audio"]
    for key in mess["missing_audio"]:
        assert "no audio file" in reasons(key) and not flags[key]["has_audio"]
    for key in mess["missing_cover"]:
        assert "no cover file" in reasons(key) and not flags[key]["has_cover"]
        assert flags[key]["has_audio"] or key in mess["missing_audio"] + mess["corrupt_audio"]
    for key in mess["empty_lyrics"] + mess["blank_lyrics"]:
        assert "lyrics empty or whitespace only" in reasons(key)
    unknown = {row.split("\t")[4] for row in mess["unknown_track_rows"]}
    assert unknown == set(failures.filter(pl.col("reason") == "track not in the catalogue")["key"])
    assert failures.filter(pl.col("reason") == "duplicate play row").height == len(
        mess["duplicate_rows"]
    )
    manifest = load_manifest(tiny_shards)
    assert sum(manifest["failures"].values()) == failures.height
    # plays without a track id were matched by artist and title, not dropped
    no_id = set(mess["plays_without_track_id"])
    plays = pl.read_parquet(tiny_shards / layout.INTERACTIONS).join(catalog, on="item_id")
    assert no_id <= set(plays["track_key"])


def test_manifest_describes_the_build(tiny_shards):
    manifest = load_manifest(tiny_shards)
    assert manifest["format_version"] == 1
    assert manifest["content_config"]["n_mels"] == 64
    assert manifest["tokenizer"]["source"] == "train:600"
    assert set(manifest["fingerprints"]) == {
        "id_map",
        "content_config",
        "item_shards",
        "interactions",
    }
    assert manifest["totals"]["items"] == 60 and manifest["totals"]["shards"] == 8
    tars = sorted(p.name for p in (tiny_shards / layout.ITEMS).glob("*.tar"))
    assert [s["name"] for s in manifest["shards"]] == tars
    assert verify(tiny_shards) == []


def test_interrupted_build_resumes_to_identical_output(
    tiny_corpus, tiny_shards, tmp_path, monkeypatch
):
    out = tmp_path / "interrupted"
    real_write = shard_writer.write_shard
    calls = {"n": 0}

    def crash_after_three(task):
        if calls["n"] == 3:
            task.path.with_name(task.path.name + ".tmp").write_bytes(b"half a shard")
            raise KeyboardInterrupt
        calls["n"] += 1
        return real_write(task)

    monkeypatch.setattr("mirkit.shards.build.write_shard", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        build_shards(corpus_inputs(tiny_corpus), options(out, workers=1))
    assert not (out / layout.MANIFEST).exists()
    assert len(list((out / layout.ITEMS).glob("*.stats.json"))) == 3
    monkeypatch.setattr("mirkit.shards.build.write_shard", real_write)

    summary = build_shards(corpus_inputs(tiny_corpus), options(out, workers=1))
    assert summary["shards written now"] == 5 and summary["shards already done"] == 3
    assert digests(out) == digests(tiny_shards)


def test_two_parts_joined_equal_one_full_build(tiny_corpus, tiny_shards, tmp_path):
    out = tmp_path / "parts"
    for part in range(2):
        summary = build_shards(corpus_inputs(tiny_corpus), options(out, part=(part, 2)))
        assert "join" in summary["next step"]
        assert not (out / layout.MANIFEST).exists()
    result = CliRunner().invoke(main, ["shards", "join", str(out)])
    assert result.exit_code == 0, result.output
    assert digests(out) == digests(tiny_shards)


def test_join_refuses_missing_parts(tiny_corpus, tmp_path):
    out = tmp_path / "half"
    build_shards(corpus_inputs(tiny_corpus), options(out, part=(1, 2)))
    result = CliRunner().invoke(main, ["shards", "join", str(out)])
    assert result.exit_code != 0 and "4 of 8 shards" in result.output and "part" in result.output


def test_resume_with_other_settings_is_refused(tiny_corpus, tiny_shards, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_shards, out)
    other = options(out, content=ContentConfig(n_mels=32, image_size=64))
    with pytest.raises(RuntimeError, match="different 'content_config'"):
        build_shards(corpus_inputs(tiny_corpus), other)


def test_append_keeps_old_ids_and_shards(tiny_corpus, tiny_shards, tmp_path):
    tracks = pl.read_csv(tiny_corpus / "tracks.csv", infer_schema=False)
    first, later = tracks.head(40), tracks.tail(20)
    first.write_csv(tmp_path / "first.csv")
    out = tmp_path / "appended"
    build_shards(corpus_inputs(tiny_corpus, tracks=tmp_path / "first.csv"), options(out))
    before_ids = pl.read_parquet(out / layout.CATALOG).select("item_id", "track_key")
    before_files = digests(out / layout.ITEMS)

    summary = build_shards(corpus_inputs(tiny_corpus), options(out, append=True))
    assert summary["new items"] == 20
    catalog = pl.read_parquet(out / layout.CATALOG)
    assert catalog.select("item_id", "track_key").head(40).equals(before_ids)
    assert set(catalog.tail(20)["track_key"]) == set(later["track_id"])
    assert catalog["item_id"].to_list() == list(range(1, 61))
    after_files = digests(out / layout.ITEMS)
    assert all(after_files[name] == digest for name, digest in before_files.items())
    assert len(after_files) > len(before_files)
    plays = pl.read_parquet(out / layout.INTERACTIONS)
    assert len(plays) == len(pl.read_parquet(tiny_shards / layout.INTERACTIONS))
    assert verify(out) == []


def test_verify_catches_a_flipped_byte_and_a_missing_shard(tiny_shards, tmp_path):
    out = tmp_path / "damaged"
    shutil.copytree(tiny_shards, out)
    shard = out / layout.ITEMS / "items-000002.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    (out / layout.ITEMS / "items-000005.tar").unlink()
    problems = verify(out)
    assert any("items-000002.tar" in p and "sha256" in p for p in problems)
    assert any("items-000005.tar: missing" in p for p in problems)
    result = CliRunner().invoke(main, ["shards", "verify", str(out)])
    assert result.exit_code != 0 and "MISMATCH" in result.output


def test_info_reports_the_build(tiny_shards):
    result = CliRunner().invoke(main, ["shards", "info", str(tiny_shards)])
    assert result.exit_code == 0
    for text in ("items", "with audio", "failures: no cover file", "clip policy", "size on disk"):
        assert text in result.output


def test_bad_inputs_name_the_problem(tiny_corpus, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(
        main,
        ["shards", "build", "--plays", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "o")],
    )
    assert missing.exit_code != 0 and "nope.tsv does not exist" in missing.output
    assert "--plays" in missing.output

    table = tmp_path / "plays.csv"
    pl.DataFrame({"uid": ["a"], "track_id": ["t"], "timestamp": [1]}).write_csv(table)
    with pytest.raises(InputError, match="'user_id' \\(set it with --play-user-col"):
        read_plays(table, "table", PlayColumns())
    result = runner.invoke(
        main,
        [
            "shards",
            "build",
            "--plays",
            str(table),
            "--play-user-col",
            "uid",
            "--tracks",
            str(tmp_path / "none.csv"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code != 0 and "none.csv does not exist" in result.output

    unavailable = runner.invoke(
        main,
        [
            "shards",
            "build",
            "--plays",
            str(tiny_corpus / PLAYS_FILE),
            "--lyrics",
            str(tiny_corpus / "lyrics.csv"),
            "--tokenizer",
            str(tmp_path / "no-such-model"),
            "--out",
            str(tmp_path / "o2"),
        ],
    )
    assert unavailable.exit_code != 0
    assert "not available offline" in unavailable.output and "train:8000" in unavailable.output


def test_real_recordings_decode(tmp_path):
    folder = shared_data("real-audio")
    config = ContentConfig()
    for path in sorted(folder.glob("*.ogg")):
        wave, (start, length) = audio_clip(path, config)
        mel = log_mel(wave, config)
        assert mel.dtype == np.float16 and mel.shape[0] == 128 and np.isfinite(mel).all()
        assert len(wave) == round(length * config.sample_rate)
        if "trumpet" in path.name:  # 5.3 s: shorter than the window, kept whole
            assert start == 0.0 and 5.0 < length < 5.5
        else:
            assert length == 30.0 and start in (30.0, max(0.0, start))


def test_lastfm_1k_sample_imports(tmp_path):
    sample = shared_data("lastfm-1k-sample") / "userid-timestamp-artid-artname-traid-traname.tsv"
    out = tmp_path / "lastfm"
    summary = build_shards(BuildInputs(plays=sample), options(out))
    manifest = load_manifest(out)
    plays = pl.read_parquet(out / layout.INTERACTIONS)
    catalog = pl.read_parquet(out / layout.CATALOG)
    assert manifest["totals"]["users"] == 2
    assert summary["plays: rows read"] == 5000
    assert len(plays) + summary["plays: duplicate rows"] == 5000
    assert (catalog["track_id"] == "").any()  # id-less tracks keyed by artist - title
    assert all(" - " in k for k in catalog.filter(pl.col("track_id") == "")["track_key"])
    assert not catalog["has_audio"].any() and manifest["tokenizer"] is None
    assert verify(out) == []


def test_seqrec_text_format_imports(tmp_path):
    lastfm = shared_data("seqrec") / "LastFM.txt"
    out = tmp_path / "seqrec"
    build_shards(BuildInputs(plays=lastfm), options(out))
    manifest = load_manifest(out)
    assert (
        manifest["totals"]["users"],
        manifest["totals"]["items"],
        manifest["totals"]["plays"],
    ) == (1090, 3646, 52551)
    plays = pl.read_parquet(out / layout.INTERACTIONS)
    first_user = plays.filter(pl.col("user_id") == "1")
    catalog = pl.read_parquet(out / layout.CATALOG)
    keys = first_user.join(catalog, on="item_id").sort("timestamp")["track_key"].to_list()
    assert keys == ["1", "2", "3", "4", "5", "6", "7", "8"]


def test_an_interrupted_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from mirkit.files import atomic_path, write_json_atomic

    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"version": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        temporary.write_text('{"version": 2, "trunc')
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    write_json_atomic(path, {"version": 2})
    assert json.loads(path.read_text()) == {"version": 2}


def test_hostile_shard_names_in_a_plan_or_manifest_never_reach_outside_the_directory(
    tiny_corpus, tiny_shards, tmp_path
):
    """A plan (read by `build --append`) or a manifest (read by verify, train, index)
    whose shard name is a path or a command is refused before anything is opened."""
    from mirkit.data.content import local_shard_urls
    from mirkit.shards.manifest import ShardsError, load_manifest

    victim = tmp_path / "victim.tar"
    victim.write_bytes(b"precious")
    out = tmp_path / "hostile"
    shutil.copytree(tiny_shards, out)
    plan = json.loads((out / layout.PLAN).read_text())
    hidden = plan["shards"][-1]
    (out / layout.ITEMS / hidden["name"]).with_suffix("").with_suffix(".stats.json").unlink()
    hidden["name"] = str(victim)  # absolute: a rebuild of it would overwrite the victim
    (out / layout.PLAN).write_text(json.dumps(plan))
    with pytest.raises(ShardsError, match="refusing shard name"):
        build_shards(corpus_inputs(tiny_corpus), options(out, append=True))
    assert victim.read_bytes() == b"precious"

    manifest = json.loads((out / layout.MANIFEST).read_text())
    for name in ("../../victim.tar", "pipe:cat /etc/passwd", "items-000000"):
        manifest["shards"][0]["name"] = name
        (out / layout.MANIFEST).write_text(json.dumps(manifest))
        with pytest.raises(ShardsError, match="refusing shard name"):
            verify(out)
        with pytest.raises(ShardsError, match="refusing shard name"):
            local_shard_urls(out, load_manifest(out))


def test_mixed_timestamp_formats_keep_every_valid_row_and_report_the_rest(tmp_path):
    """Each row's time is parsed by whichever supported form fits (the format is not
    guessed from the first row); impossible times are failure rows; a file whose times
    are mostly unreadable stops the build with the forms mirkit reads."""
    path = tmp_path / "plays.tsv"
    times = [
        "2009-05-04 23:08:57",  # no Z on the first row: once lost every other row
        "2009-05-04T23:08:57Z",
        "2009-05-04T23:08:57.5+02:00",
        "2009-05-05",
        "1241478537",
        "not a time",
        "1900-01-01T00:00:00Z",
        "2999-01-01T00:00:00Z",
    ]
    lines = [f"u1\t{t}\tmbid\tArtist\tmbid{i}\tTrack {i}" for i, t in enumerate(times)]
    path.write_text("\n".join(lines) + "\n")
    plays = read_plays(path, "lastfm")
    seconds = plays.frame["timestamp"].to_list()
    assert seconds == [1241478537, 1241478537, 1241471337, 1241481600, 1241478537]
    reasons = sorted(p.reason for p in plays.problems)
    assert reasons == [
        "timestamp before 1970",
        "timestamp in the future",
        "unparsable timestamp",
    ]
    assert plays.rows_read == len(times)

    path.write_text("".join(f"u1\t04/05/2009 23:0{i}\tm\tA\tm{i}\tT\n" for i in range(5)))
    with pytest.raises(InputError, match="5 of 5 play times cannot be used.*ISO-8601"):
        read_plays(path, "lastfm")


def _png_claiming(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header claims width x height pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_hostile_media_files_become_failure_rows_and_the_build_goes_on(tiny_corpus, tmp_path):
    """A FIFO posing as audio (reading it would block forever), a symlink to a device, a
    PNG that claims 30000 x 30000 pixels, and lyrics of 200,000 characters: each item
    gets its failure row, the build finishes, and every other item is complete."""
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    audio = sorted((corpus / "audio").iterdir())
    fifo, device = audio[0], audio[1]
    fifo.unlink()
    os.mkfifo(fifo)
    device.unlink()
    device.symlink_to("/dev/zero")
    secret = tmp_path / "secret.wav"  # outside the folder: never read, whatever it is
    shutil.copy(audio[2], secret)
    audio[2].unlink()
    audio[2].symlink_to(secret)
    bomb = sorted((corpus / "covers").iterdir())[0]
    bomb.write_bytes(_png_claiming(30000, 30000))
    lyrics = pl.read_csv(corpus / "lyrics.csv", infer_schema=False)
    long_text = "la " * 70_000
    lyrics.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(long_text)).otherwise("lyrics")
        .alias("lyrics")
    ).write_csv(corpus / "lyrics.csv")  # fmt: skip

    out = tmp_path / "shards"
    started = time.monotonic()
    build_shards(corpus_inputs(corpus), options(out))
    assert time.monotonic() - started < 120
    failures = pl.read_parquet(out / layout.FAILURES)
    audio_failures = failures.filter(pl.col("modality") == "audio")["detail"].to_list()
    assert any(fifo.name in d and "not a regular file" in d for d in audio_failures)
    outside = failures.filter(pl.col("kind") == "file")
    assert {audio[2].name, device.name} <= set(outside["key"].to_list())  # /dev/zero too
    assert "outside --audio-dir" in " ".join(outside["reason"].to_list())
    covers = failures.filter(pl.col("modality") == "cover")["detail"].to_list()
    assert any("decompression bomb" in d.lower() or "exceeds limit" in d for d in covers)
    assert verify(out) == []
    assert not list((out / layout.ITEMS).glob("*.tmp"))


def test_lyrics_files_that_cannot_be_used_as_they_are_get_a_message(tmp_path):
    from mirkit.shards.inputs import read_lyrics

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("track_id,lyrics\nt1,caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8.*iconv"):
        read_lyrics(latin1)
    twice = tmp_path / "twice.csv"
    twice.write_text("track_id,lyrics\nt1,first\nt2,other\nt1,second\n")
    with pytest.raises(InputError, match="several rows for 1 track.*t1"):
        read_lyrics(twice)
    seqrec = tmp_path / "seqrec.txt"
    seqrec.write_bytes(b"1 2 3\n2 \xff\xfe 4\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_plays(seqrec, "seqrec")


def test_an_empty_play_log_is_refused_instead_of_building_an_empty_catalogue(tmp_path):
    plays = tmp_path / "plays.tsv"
    plays.write_text("")
    result = CliRunner().invoke(
        main,
        ["shards", "build", "--plays", str(plays), "--plays-format", "lastfm"]
        + ["--out", str(tmp_path / "out")],
    )
    assert result.exit_code == 1 and "holds no usable plays" in result.output
    assert not (tmp_path / "out" / layout.MANIFEST).exists()


def test_a_rebuild_with_other_inputs_never_reuses_a_stale_shard(tiny_corpus, tiny_shards, tmp_path):
    """Same corpus size, same plan of item ids, other content: the old shards would be
    reused by a resume (they have stats files); the build refuses instead."""
    out = tmp_path / "rebuilt"
    shutil.copytree(tiny_shards, out)
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    lyrics = pl.read_csv(corpus / "lyrics.csv", infer_schema=False)
    lyrics.with_columns(pl.col("lyrics").str.reverse()).write_csv(corpus / "lyrics.csv")
    before = digests(out / layout.ITEMS)
    with pytest.raises(BuildConflict, match="built from other inputs"):
        build_shards(corpus_inputs(corpus), options(out))
    assert digests(out / layout.ITEMS) == before
    build_shards(corpus_inputs(tiny_corpus), options(out))  # the same inputs: a resume
    assert digests(out / layout.ITEMS) == before


def test_two_builds_into_one_out_cannot_both_proceed(tiny_corpus, tmp_path):
    import fcntl

    out = tmp_path / "busy"
    (out / layout.LOCKS).mkdir(parents=True)
    with open(out / layout.LOCKS / "part-0-of-1", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a build in progress
        held.write("pid 4242 on worker-7")
        held.flush()
        with pytest.raises(BuildConflict, match="another build is writing.*pid 4242 on worker-7"):
            build_shards(corpus_inputs(tiny_corpus), options(out))
    assert not (out / layout.MANIFEST).exists()


def test_a_sample_that_cannot_be_decoded_names_its_shard(tiny_shards):
    from mirkit.data.content import InputSpec, decode_item
    from mirkit.shards.manifest import ShardsError

    shard = str(tiny_shards / layout.ITEMS / "items-000001.tar")
    sample = next(s for s in read_samples([shard]) if "cover.jpg" in s)
    assert decode_item(sample, InputSpec(cover_size=32), None)["item_id"] > 0
    sample["cover.jpg"] = sample["cover.jpg"][:40]  # a damaged cover inside the shard
    with pytest.raises(ShardsError, match=f"items-000001.tar: sample {sample['__key__']}"):
        decode_item(sample, InputSpec(cover_size=32), None)


def test_catalogue_rows_that_name_no_track_or_disagree_are_refused(tmp_path):
    from mirkit.shards.inputs import read_tracks

    path = tmp_path / "tracks.csv"
    path.write_text("track_id,track_name,artist_name\nt1,One,A\nt1,One,A\nt2,Two,B\n")
    assert read_tracks(path)["track_id"].to_list() == ["t1", "t2"]  # exact copies: one
    path.write_text("track_id,track_name,artist_name\nt1,One,A\nt2,Two,B\nt1,Uno,A\n")
    with pytest.raises(InputError, match="1 track\\(s\\) have several rows that disagree \\(t1\\)"):
        read_tracks(path)
    path.write_text("track_id,track_name,artist_name\nt1,One,A\n,,\n")
    with pytest.raises(InputError, match="no track_id and no artist and title \\(lines 3\\)"):
        read_tracks(path)
