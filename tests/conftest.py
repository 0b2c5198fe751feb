"""Shared fixtures: corpora are generated once per test session into a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirkit.synth.corpus import generate_corpus
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
