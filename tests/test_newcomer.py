"""The newcomer's path: the README's quickstart (`make demo`, on the tiny preset) and
`mirkit doctor`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from click.testing import CliRunner

from mirkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_make_demo_runs_the_whole_job_and_reuses_it(tmp_path):
    """`make demo` in a fresh working directory (the repository's Makefile, configs,
    tools and environment linked in), on the tiny corpus: synth -> shards -> train ->
    index -> eval -> recommendations and the summary; a second run rebuilds nothing."""
    for name in ("Makefile", "configs", "tools", ".venv", "pyproject.toml", "uv.lock"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def make_demo() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", "demo", "PRESET=tiny"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )

    first = make_demo()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    output = first.stdout + first.stderr
    for expected in ("Top 10 for user_000001", "make demo (tiny)", "oracle ceiling", "time: train"):
        assert expected in output, expected
    for artefact in (
        "data/tiny/truth.json",
        "shards/tiny/manifest.json",
        "runs/tiny/model/model.pt",
        "runs/tiny-ids/model/model.pt",
        "runs/tiny/index.h5",
        "runs/tiny/eval-test.md",
    ):
        assert (tmp_path / artefact).exists(), artefact
    again = make_demo()
    assert again.returncode == 0
    assert "mirkit --config configs/tiny.toml train" not in again.stdout  # reused


def test_doctor_reports_a_missing_model_with_its_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    result = CliRunner().invoke(main, ["doctor", "--preset", "full"])
    assert result.exit_code != 0
    assert "text model" in result.output and "huggingface-cli download" in result.output
    assert "ImageNet weights" in result.output and "resnet18" in result.output
    assert "missing: text model, ImageNet weights" in result.output
    relaxed = CliRunner().invoke(main, ["doctor"])  # the small preset needs neither
    assert relaxed.exit_code == 0, relaxed.output
