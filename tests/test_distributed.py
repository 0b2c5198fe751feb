"""The trainer on two ranks (gloo on the CPU): equal steps with uneven shards, identical
weights, preemption and resume, a failing rank."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mirkit.data.content import local_shard_urls
from mirkit.distributed import RankFailed
from mirkit.shards.manifest import load_manifest
from mirkit_train.train import STOPPED_EXIT_STATUS, TrainingError, train
from tests.test_train import config

MIRKIT = str(Path(sys.executable).with_name("mirkit"))


def test_two_ranks_run_equal_steps_and_end_with_identical_weights(tiny_shards, tmp_path):
    manifest = load_manifest(tiny_shards)
    assert len({s["samples"] for s in manifest["shards"]}) > 1  # uneven shards
    run = tmp_path / "ddp"
    summary = train(
        config(
            tiny_shards,
            run,
            modalities=("id",),
            path="item-major",
            epochs=2,
            max_steps_per_epoch=0,
            workers=1,
        ),
        nproc_per_node=2,
    )
    record = json.loads((run / "config.json").read_text())
    assert record["world_size"] == 2
    assert summary["ranks"] == 2 and summary["steps"] == 2 * record["steps_per_epoch"]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["rank_steps"] == [summary["steps"]] * 2
    assert len(state["rank_weights"]) == 2
    assert state["rank_weights"][0] == state["rank_weights"][1]


def test_too_few_shards_for_ranks_and_workers_is_refused(tiny_shards, tmp_path):
    urls = local_shard_urls(tiny_shards, load_manifest(tiny_shards))[:2]
    with pytest.raises(TrainingError, match="2 shards cannot feed 1 ranks x 3 loader workers"):
        train(config(tiny_shards, tmp_path / "run", shard_urls=tuple(urls), workers=3))


def _wait_for_first_step(run: Path, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    metrics = run / "metrics.jsonl"
    while time.monotonic() < deadline:
        if metrics.exists() and '"loss"' in metrics.read_text():
            return
        if process.poll() is not None:
            pytest.fail(f"training ended before it could be stopped: {process.stderr.read()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("training did not log a step in time")


def test_sigterm_mid_epoch_then_resume_reaches_the_uninterrupted_step_count(tiny_shards, tmp_path):
    run = tmp_path / "preempted"
    command = [
        MIRKIT,
        "train",
        "--shards",
        str(tiny_shards),
        "--run",
        str(run),
        "--modalities",
        "audio,id",
        "--path",
        "item-major",
        "--epochs",
        "2",
        "--contexts",
        "2",
        "--items-per-batch",
        "8",
        "--workers",
        "0",
        "--nproc-per-node",
        "2",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    _wait_for_first_step(run, process, timeout=120)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == STOPPED_EXIT_STATUS, stderr  # saved, not finished
    assert "stopped by SIGTERM" in stderr
    per_epoch = json.loads((run / "config.json").read_text())["steps_per_epoch"]
    stopped = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert 0 < stopped["step"] < 2 * per_epoch

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert final["step"] == 2 * per_epoch
    assert final["rank_steps"] == [2 * per_epoch] * 2


def test_a_failing_rank_ends_the_job(tiny_shards, tmp_path):
    # rank 1 loses its storage: every shard read fails there, rank 0's reads work
    urls = [
        f'pipe:test "$RANK" = 1 && exit 3; cat {shlex.quote(url)}'
        for url in local_shard_urls(tiny_shards, load_manifest(tiny_shards))
    ]
    started = time.monotonic()
    with pytest.raises(RankFailed, match=r"rank 1 failed first: \w+Error.*items-0"):
        train(
            config(
                tiny_shards,
                tmp_path / "run",
                modalities=("id",),
                path="item-major",
                shard_urls=tuple(urls),
            ),
            nproc_per_node=2,
        )
    assert time.monotonic() - started < 90


def test_the_same_command_runs_under_torchrun(tiny_shards, tmp_path):
    run = tmp_path / "torchrun"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "--",  # torchrun's parser would take --run for an abbreviation of its --run-path
        "mirkit",
        "train",
        "--shards",
        str(tiny_shards),
        "--run",
        str(run),
        "--modalities",
        "id",
        "--epochs",
        "1",
        "--batch-size",
        "4",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads((run / "config.json").read_text())
    assert record["world_size"] == 2
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["rank_steps"] == [record["steps_per_epoch"]] * 2
