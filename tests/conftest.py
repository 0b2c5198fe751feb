"""Shared fixtures: corpora are generated once per test session into a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirkit.shards.build import BuildInputs, BuildOptions, build_shards
from mirkit.shards.media import ContentConfig
from mirkit.synth.corpus import PLAYS_FILE, PROFILES_FILE, generate_corpus
from mirkit.synth.presets import PRESETS

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny corpus, seed 0, two workers."""
    out = tmp_path_factory.mktemp("tiny-seed0")
    generate_corpus(PRESETS["tiny"], seed=0, out=out, workers=2)
    return out


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip: a user's fresh clone does not have it."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not present (only the project's own machines have it)")
    return path


CONTENT = ContentConfig(clip_offset_s=1.0, clip_seconds=3.0, n_mels=64, image_size=64)
"""Small content settings so shards tests and training tests stay fast."""


def corpus_inputs(corpus: Path, **overrides) -> BuildInputs:
    values = {
        "plays": corpus / PLAYS_FILE,
        "tracks": corpus / "tracks.csv",
        "lyrics": corpus / "lyrics.csv",
        "audio_dir": corpus / "audio",
        "covers": corpus / "covers",
        "profiles": corpus / PROFILES_FILE,
    }
    return BuildInputs(**(values | overrides))


def options(out: Path, **overrides) -> BuildOptions:
    values = {"out": out, "content": CONTENT, "tokenizer": "train:600", "workers": 2}
    return BuildOptions(**(values | overrides))


@pytest.fixture(scope="session")
def tiny_shards(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of the tiny corpus (small content settings, a fitted tokenizer)."""
    out = tmp_path_factory.mktemp("shards") / "tiny"
    build_shards(corpus_inputs(tiny_corpus), options(out))
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory):
    """A 1-layer BERT saved with its own fitted tokenizer, loaded back by path like a
    user's model directory: (directory, tokenizer)."""
    from transformers import BertConfig, BertModel

    from mirkit.shards.text import train_tokenizer

    tokenizer = train_tokenizer(["la la love", "amor corazón", "любовь ночь"] * 20, 150)
    directory = tmp_path_factory.mktemp("models") / "tiny-bert"
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory, tokenizer


@pytest.fixture(scope="session")
def indexed_run(tiny_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multimodal run on the tiny shards (2 short epochs) and its index."""
    from mirkit.serving.index import build_index
    from mirkit.serving.runs import TrainedRun
    from mirkit_train.train import train
    from tests.test_train import config

    run = tmp_path_factory.mktemp("indexed") / "run"
    train(config(tiny_shards, run, epochs=2, max_steps_per_epoch=6))
    build_index(TrainedRun.open(run))
    return run
