"""The plays-only probe scaled down (200,000 plays over 50,000 items): what makes the
20-million-play run of BENCHMARKS.md possible, asserted where it can break - play arrays
memory-mapped, not loaded; evaluation in blocks whose size does not grow with the number
of users; in-batch training that never builds a catalogue-sized logit matrix - and the
chain itself (shards, 20 steps of training, index, eval) through the real commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.utils._python_dispatch import TorchDispatchMode

from mirkit.cli import main
from mirkit.data.plays import SplitConfig, load_plays, make_split
from mirkit.evaluation.protocol import SCORE_BUDGET, model_ranks, model_scores
from mirkit.models.config import PRESETS
from mirkit.models.two_tower import TwoTower
from mirkit.shards.build import BuildInputs, BuildOptions, build_shards
from mirkit.synth.plays_only import plays_only_log
from mirkit_train.objectives import user_major_loss
from mirkit_train.user_major import UserMajorBatches
from tests.test_train import config

N_PLAYS, N_ITEMS, N_USERS = 200_000, 50_000, 100


def test_plays_only_log_is_deterministic_and_looks_like_listening():
    log = plays_only_log(20_000, 5_000, 20, seed=3)
    assert log.equals(plays_only_log(20_000, 5_000, 20, seed=3))
    assert not log.equals(plays_only_log(20_000, 5_000, 20, seed=4))
    assert log.group_by("user_id").len()["len"].to_list() == [1000] * 20
    per_user = log.group_by("user_id", maintain_order=True).agg("timestamp", "track_id")
    times = per_user["timestamp"].to_list()
    assert all(np.all(np.diff(t) >= 0) for t in times)
    gaps = np.concatenate([np.diff(t) for t in times])
    assert (gaps > 3600).mean() > 0.03  # sessions apart
    assert (gaps <= 300).mean() > 0.8  # plays within a session
    tracks = [np.array(t) for t in per_user["track_id"].to_list()]
    back = np.mean([np.mean([(t[k:] == t[:-k]).mean() for k in range(1, 6)]) for t in tracks])
    assert 0.05 < back < 0.5  # going back to a track of a few plays ago
    assert log["track_id"].n_unique() > 2_500  # the catalogue is mostly reached


@pytest.fixture(scope="module")
def probe_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("probe")
    plays_only_log(N_PLAYS, N_ITEMS, N_USERS).write_parquet(work / "plays.parquet")
    out = work / "shards"
    build_shards(BuildInputs(plays=work / "plays.parquet"), BuildOptions(out=out, workers=2))
    return out


def _split(shards: Path):
    manifest = json.loads((shards / "manifest.json").read_text())
    plays = load_plays(shards, manifest["fingerprints"]["interactions"])
    return plays, make_split(plays, SplitConfig("leave-one-out"))


def test_play_arrays_are_memory_mapped(probe_shards: Path):
    plays, _ = _split(probe_shards)
    assert isinstance(plays.items, np.memmap) and isinstance(plays.times, np.memmap)
    assert len(plays.items) > 0.99 * N_PLAYS  # duplicates of the same second are dropped


def test_evaluation_blocks_do_not_grow_with_users(probe_shards: Path):
    _, split = _split(probe_shards)
    n_items = int(np.asarray(split.plays.items).max())
    torch.manual_seed(0)
    small = PRESETS["small"].with_modalities(("id",))
    tower = TwoTower(small, n_items).user_tower
    items = torch.nn.functional.normalize(torch.randn(n_items + 1, small.dim), dim=1)
    rows = split.train_rows[:: max(1, len(split.train_rows) // 3000)][:3000]
    for users in (300, 3000):  # ten times the targets, the same largest block
        sizes = [len(s) for _, s in model_scores(tower, split, rows[:users], items)]
        assert sum(sizes) == users
        assert max(sizes) * len(items) <= SCORE_BUDGET
    few, _ = model_ranks(tower, split, rows[:40], items, exclude_seen=False)
    many, _ = model_ranks(tower, split, rows[:3000], items, exclude_seen=False)
    assert np.array_equal(few, many[:40])  # blocks change the memory, not the ranks


class LargestOutputs(TorchDispatchMode):
    """Records the shape of every tensor any operation produces (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def test_in_batch_training_never_builds_catalogue_logits(probe_shards: Path):
    _, split = _split(probe_shards)
    n_items = int(np.asarray(split.plays.items).max())
    torch.manual_seed(0)
    net = TwoTower(PRESETS["small"].with_modalities(("id",)), n_items)
    cfg = config("unused", "unused", modalities=("id",))
    batches = UserMajorBatches(split, net.config.max_len, 64, 0, shift_windows=False)
    batch = next(iter(batches.epoch(0)))
    log_pop = torch.zeros(n_items + 1)
    with LargestOutputs() as seen:
        loss, pairs = user_major_loss(net, batch, "in-batch", n_items, log_pop, cfg, None)
        loss.backward()
    assert pairs > 1000 and torch.isfinite(loss)
    dim = net.config.dim
    catalogue_sized = {s for s in seen.shapes if any(d > n_items for d in s)}
    # the id table, its gradient and the normalised rows: [rows, dim], nothing [*, rows]
    assert catalogue_sized and all(s[-1] == dim and len(s) == 2 for s in catalogue_sized)
    largest_logits = max(int(np.prod(s)) for s in seen.shapes if len(s) == 2 and s[-1] != dim)
    assert largest_logits <= pairs * pairs  # targets x their distinct items, never x catalogue


def test_probe_chain_runs_through_the_commands(probe_shards: Path, tmp_path: Path):
    run = tmp_path / "run"
    cli = CliRunner()
    steps = ["--epochs", "1", "--max-steps-per-epoch", "20", "--val-limit", "100"]
    for args in (
        ["train", "--shards", str(probe_shards), "--run", str(run), "--modalities", "id",
         "--loss", "in-batch", *steps],
        ["index", "--run", str(run)],
        ["eval", "--run", str(run), "--limit", "50"],
    ):  # fmt: skip
        result = cli.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    report = json.loads((run / "eval-test.json").read_text())
    assert report["n_targets"] == 50
    assert report["n_items"] > 0.8 * N_ITEMS
    model = report["metrics"]["run"]["all"]
    assert model["n"] == 50 and model["NDCG@10"] is not None
