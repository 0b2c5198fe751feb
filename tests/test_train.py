"""The trainer on the tiny corpus: end to end, both data paths, held-out rows, logQ,
resume, refusals."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from mirkit.data.content import InputSpec, local_shard_urls
from mirkit.data.plays import SplitConfig, _cached, load_plays, make_split
from mirkit.models.config import ModelConfig
from mirkit.models.two_tower import TwoTower
from mirkit.serving.index import embed_catalogue
from mirkit.shards.manifest import ShardsError, load_manifest
from mirkit_train.config import TrainConfig
from mirkit_train.item_major import ItemMajorStream, emission_rates
from mirkit_train.train import TrainingError, parameter_groups, train
from mirkit_train.user_major import windows

N_ITEMS = 60
CACHE_ROWS = 4_000_000  # 32 MB: saving takes long enough for a reader to catch it half-written


def config(shards: Path, run: Path, **changes) -> TrainConfig:
    values = {
        "shards": str(shards),
        "run": str(run),
        "epochs": 2,
        "items_per_batch": 16,
        "contexts": 4,
        "workers": 0,
        "lr": 3e-3,
        "max_steps_per_epoch": 8,
    }
    return TrainConfig(**(values | changes))


def tiny_split(shards: Path):
    manifest = load_manifest(shards)
    return make_split(load_plays(shards, manifest["fingerprints"]["interactions"]), SplitConfig())


@pytest.fixture(scope="module")
def multimodal_run(tiny_shards, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "mm"
    train(config(tiny_shards, run, epochs=3))
    return run


def test_end_to_end_training_beats_a_random_ranking(multimodal_run):
    rows = [
        json.loads(line) for line in (multimodal_run / "metrics.jsonl").read_text().splitlines()
    ]
    validation = [r for r in rows if "val_NDCG@10" in r]
    assert len(validation) == 3
    final = validation[-1]
    assert np.isfinite(final["val_NDCG@10"]) and np.isfinite(final["val_Recall@10"])
    random_ndcg = sum(1 / np.log2(r + 1) for r in range(1, 11)) / N_ITEMS
    assert max(v["val_NDCG@10"] for v in validation) > random_ndcg
    losses = [r["loss"] for r in rows if "loss" in r]
    assert np.mean(losses[-3:]) < losses[0]  # the loss falls
    assert all(0 < v["validation_fraction"] < 1 for v in validation)  # its cost is shown
    for name in (
        "config.json",
        "train.log",
        "curves.png",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "model/model.json",
    ):
        assert (multimodal_run / name).exists(), name
    record = json.loads((multimodal_run / "config.json").read_text())
    assert record["path"] == "item-major" and record["git_commit"]
    assert record["shards_fingerprints"]["id_map"] and record["versions"]["torch"]


def test_config_json_rebuilds_the_same_model(multimodal_run, tiny_shards):
    record = json.loads((multimodal_run / "config.json").read_text())
    rebuilt = TwoTower(
        ModelConfig.from_dict(record["model"]), record["n_items"], record["vocab_size"]
    )
    state = torch.load(multimodal_run / "checkpoints" / "best.pt", weights_only=True)
    rebuilt.load_state_dict(state["model"])
    saved = TwoTower.load(multimodal_run / "model")
    spec = InputSpec(
        mel_frames=rebuilt.config.mel_frames,
        n_mels=64,
        cover_size=rebuilt.config.cover_size,
        max_tokens=64,
    )
    urls = local_shard_urls(tiny_shards, load_manifest(tiny_shards))
    a = embed_catalogue(rebuilt, N_ITEMS, urls, spec, torch.device("cpu"))
    b = embed_catalogue(saved, N_ITEMS, urls, spec, torch.device("cpu"))
    assert torch.equal(a, b)


def test_resume_continues_the_step_count(tiny_shards, tmp_path):
    run = tmp_path / "resumed"
    first = train(config(tiny_shards, run, modalities=("id",), epochs=2, batch_size=4))
    resumed = train(
        config(tiny_shards, run, modalities=("id",), epochs=3, batch_size=4, resume=True)
    )
    assert resumed["steps"] == first["steps"] * 3 // 2
    epochs = [
        json.loads(line)["epoch"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if "val_NDCG@10" in json.loads(line)
    ]
    assert epochs == [0, 1, 2]


def test_resume_refuses_other_shards_and_other_models(tiny_shards, tmp_path):
    run = tmp_path / "run"
    train(config(tiny_shards, run, modalities=("id",), epochs=1, batch_size=4))
    other = tmp_path / "other-shards"
    shutil.copytree(tiny_shards, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["fingerprints"]["interactions"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TrainingError, match="interactions fingerprint differs"):
        train(config(other, run, modalities=("id",), epochs=2, batch_size=4, resume=True))
    with pytest.raises(TrainingError, match="model config differs"):
        train(
            config(
                tiny_shards, run, modalities=("id",), epochs=2, batch_size=4, max_len=7, resume=True
            )
        )
    manifest["format_version"] = 2
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardsError, match="version 2"):
        train(config(other, tmp_path / "new", modalities=("id",)))


def test_shifted_windows_move_the_cuts_between_epochs(tiny_shards):
    split = tiny_split(tiny_shards)
    starts, ends = np.asarray(split.plays.indptr[:-1]), np.asarray(split.prefix_end)
    max_len = int(np.median(ends - starts))  # some prefixes fit one window, some do not
    fixed = {tuple(w) for w in windows(split, max_len)}
    draws = [{tuple(w) for w in windows(split, max_len, np.random.default_rng(s))} for s in (0, 1)]
    assert draws[0] != fixed and draws[1] != draws[0]
    short = [(int(u), int(e)) for u, e in zip(starts, ends, strict=True) if e - u <= max_len + 1]
    assert short and all(w in d for w in short for d in draws)  # never cut


def _build_the_cache_slowly(directory: str) -> int:
    def build() -> dict[str, np.ndarray]:
        time.sleep(0.5)  # every process is building when the first one publishes
        return {"values": np.arange(CACHE_ROWS, dtype=np.int64)}

    return int(np.asarray(_cached(Path(directory), build)["values"]).sum())


def test_ranks_building_the_play_cache_at_once_all_read_complete_arrays(tmp_path):
    directory = tmp_path / ".cache" / "plays-x"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        sums = pool.map(_build_the_cache_slowly, [str(directory)] * 8, chunksize=1)
    assert sums == [CACHE_ROWS * (CACHE_ROWS - 1) // 2] * 8
    assert [p.name for p in directory.parent.iterdir()] == ["plays-x"]  # no leftovers
    assert sorted(p.name for p in directory.iterdir()) == ["done.json", "values.npy"]


def test_the_play_cache_is_never_visible_half_written(tmp_path, monkeypatch):
    """Deterministic half of the test above: at every write, the cache directory other
    processes read is either absent or complete."""
    directory = tmp_path / "plays-x"
    save = np.save

    def checked_save(path, array) -> None:
        assert not directory.exists() or (directory / "done.json").exists()
        save(path, array)

    monkeypatch.setattr(np, "save", checked_save)
    arrays = {"a": np.arange(5), "b": np.arange(3)}
    loaded = _cached(directory, lambda: arrays)
    assert all(np.array_equal(loaded[n], arrays[n]) for n in arrays)


def test_a_play_cache_that_cannot_be_written_is_said_and_kept_in_memory(tmp_path, caplog):
    directory = tmp_path / "plays-x"
    directory.mkdir()
    (directory / "values.npy").write_bytes(b"half")  # an interrupted build, no done.json
    loaded = _cached(directory, lambda: {"values": np.arange(4)})
    assert np.array_equal(loaded["values"], np.arange(4))
    assert "play cache not written" in caplog.text and str(directory) in caplog.text
    assert (directory / "values.npy").read_bytes() == b"half"  # nothing overwritten


def test_held_out_plays_are_never_training_targets(tiny_shards):
    split = tiny_split(tiny_shards)
    held_out = set(split.val_rows) | set(split.test_rows)
    assert held_out and not held_out & set(split.train_rows)
    # user-major: every target of every window is a training row
    targets = {r for start, end in windows(split, 10) for r in range(start + 1, end)}
    assert targets == set(split.train_rows)
    # shifted windows (drawn anew each epoch) still predict every training play once
    for seed in (0, 1):
        shifted = windows(split, 3, np.random.default_rng(seed))
        rows = [r for start, end in shifted for r in range(start + 1, end)]
        assert sorted(rows) == sorted(split.train_rows)
        assert (shifted[:, 1] - shifted[:, 0]).max() <= 4
    # item-major: every emitted target is a training row, its history ends right before it
    stream = ItemMajorStream(
        local_shard_urls(tiny_shards, load_manifest(tiny_shards)),
        split,
        N_ITEMS,
        InputSpec(),
        k=4,
        m=8,
        max_len=10,
        cap=8.0,
        seed=0,
        epoch=0,
    )
    train_rows = set(split.train_rows)
    for batch, _ in zip(stream, range(20), strict=False):
        rows = batch.target_rows.numpy()
        assert set(rows.ravel()) <= train_rows
        items = np.asarray(split.plays.items)
        assert (items[rows] == batch.items.item_ids.numpy()[:, None]).all()
        for m in range(rows.shape[0]):
            for k in range(rows.shape[1]):
                assert np.array_equal(
                    batch.histories[m, k].numpy(), split.history(int(rows[m, k]), 10)
                )


def test_item_major_batches_are_structural_with_exact_log_q(tiny_shards):
    split = tiny_split(tiny_shards)
    urls = local_shard_urls(tiny_shards, load_manifest(tiny_shards))
    stream = ItemMajorStream(
        urls, split, N_ITEMS, InputSpec(), k=4, m=8, max_len=10, cap=3.0, seed=1, epoch=0
    )
    counts = np.zeros(N_ITEMS + 1)
    for batch, _ in zip(stream, range(3000), strict=False):
        ids = batch.items.item_ids.numpy()
        assert len(ids) == 8 and len(set(ids)) == 8
        assert batch.histories.shape == (8, 4, 10) and batch.target_rows.shape == (8, 4)
        np.add.at(counts, ids, 1)
        assert np.allclose(np.exp(batch.log_q.numpy()), stream.rates[ids] / stream.rates.sum())
    expected = emission_rates(split, N_ITEMS, 4, 3.0)
    expected /= expected.sum()
    observed = counts / counts.sum()
    assert 0.5 * np.abs(observed - expected).sum() < 0.05  # total variation distance
    assert observed[expected == 0].sum() == 0  # items without training plays never appear


def test_user_major_refuses_content_models(tiny_shards, tmp_path):
    with pytest.raises(TrainingError, match="item-major"):
        train(config(tiny_shards, tmp_path / "x", path="user-major"))
    with pytest.raises(TrainingError, match="--mask-seen applies to the full softmax"):
        train(
            config(tiny_shards, tmp_path / "y", modalities=("id",), loss="in-batch", mask_seen=True)
        )
    with pytest.raises(TrainingError, match="--history-dropout 1.0 is not a probability"):
        train(config(tiny_shards, tmp_path / "z", modalities=("id",), history_dropout=1.0))


def test_an_existing_run_is_not_overwritten(tiny_shards, tmp_path):
    run = tmp_path / "kept"
    train(config(tiny_shards, run, modalities=("id",), epochs=1, batch_size=4))
    before = (run / "config.json").read_bytes()
    with pytest.raises(TrainingError, match="already holds a run"):
        train(config(tiny_shards, run, modalities=("id",), epochs=1, batch_size=8))
    assert (run / "config.json").read_bytes() == before


def test_a_text_model_with_another_tokenizer_retokenises_the_stored_lyrics(
    tiny_shards, tiny_bert, tmp_path, caplog
):
    directory, tokenizer = tiny_bert
    with caplog.at_level("WARNING"):
        summary = train(
            config(
                tiny_shards,
                tmp_path / "run",
                modalities=("lyrics", "id"),
                text_model=str(directory),
                epochs=1,
                max_steps_per_epoch=3,
            )
        )
    assert "tokenizer differs from the shards'" in caplog.text
    assert summary["steps"] == 3
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["vocab_size"] == len(tokenizer)


def test_shard_names_in_a_manifest_cannot_run_commands(tiny_shards, tmp_path):
    evil = tmp_path / "evil-shards"
    shutil.copytree(tiny_shards, evil)
    marker = tmp_path / "pwned"
    manifest = json.loads((evil / "manifest.json").read_text())
    manifest["shards"][0]["name"] = f"pipe:touch {marker}; cat items-000000.tar"
    (evil / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardsError, match="refusing shard name"):
        local_shard_urls(evil, manifest)
    with pytest.raises(ShardsError, match="refusing shard name"):
        train(config(evil, tmp_path / "run", epochs=1, max_steps_per_epoch=1))
    assert not marker.exists()


def test_init_from_copies_the_matching_weights_of_another_run(tiny_shards, tmp_path):
    from mirkit_train.train import init_from_run

    source = tmp_path / "ids"
    train(config(tiny_shards, source, modalities=("id",), epochs=1, batch_size=4))
    trained = TwoTower.load(source / "model")
    model = TwoTower(
        ModelConfig.from_dict(
            json.loads((source / "model" / "model.json").read_text())["config"]
        ).with_modalities(("audio", "id")),
        N_ITEMS,
    )
    copied = init_from_run(model, source, torch.device("cpu"))
    assert copied > 10
    for name, value in trained.user_tower.state_dict().items():
        assert torch.equal(model.user_tower.state_dict()[name], value), name
    with pytest.raises(TrainingError, match="does not exist"):
        init_from_run(model, tmp_path / "nothing", torch.device("cpu"))
    # a run of other model options: its repeat part would be left at zero, then frozen
    other = TwoTower(dataclasses.replace(model.config, reweigh_history=False), N_ITEMS)
    with pytest.raises(TrainingError, match="user_tower.repeat.mix.*other model options"):
        init_from_run(other, source, torch.device("cpu"))


def test_freeze_keeps_the_warm_started_user_tower_and_trains_the_content(tiny_shards, tmp_path):
    source = tmp_path / "ids"
    no_artists = {"artists": False}  # so that an id-dropped item has content alone
    train(config(tiny_shards, source, modalities=("id",), epochs=1, batch_size=4, **no_artists))
    run = tmp_path / "content"
    train(
        config(
            tiny_shards,
            run,
            modalities=("audio", "id"),
            epochs=1,
            init_from=str(source),
            freeze=("user_tower",),
            **no_artists,
        )
    )
    before, after = TwoTower.load(source / "model"), TwoTower.load(run / "model")
    for name, value in before.user_tower.state_dict().items():
        assert torch.equal(after.user_tower.state_dict()[name], value), name
    assert after.item_tower.id_table is after.user_tower.id_table  # frozen through sharing
    fresh = TwoTower(after.config, N_ITEMS)
    assert not torch.equal(
        after.item_tower.project["audio"].weight, fresh.item_tower.project["audio"].weight
    )
    # the cold scale learns from the dropped ids (it starts at 1)
    assert after.item_tower.log_cold_scale.item() != 0.0
    with pytest.raises(TrainingError, match="no such part"):
        train(config(tiny_shards, tmp_path / "bad", modalities=("id",), freeze=("user_towr",)))


def test_the_alignment_term_asks_content_to_find_its_own_detached_id_row(tiny_shards, tmp_path):
    from mirkit.models.config import PRESETS
    from mirkit.models.item_tower import ItemBatch
    from mirkit.models.losses import info_nce
    from mirkit_train.item_major import ItemMajorBatch
    from mirkit_train.objectives import item_major_loss

    torch.manual_seed(0)
    model = TwoTower(PRESETS["small"].with_modalities(("audio", "id")), N_ITEMS).eval()
    m, k = 6, 3
    items = ItemBatch(
        item_ids=torch.arange(1, m + 1),
        mel=torch.randn(m, 128, 64) * 10 - 40,
        mel_frames=torch.full((m,), 64),
    )
    batch = ItemMajorBatch(
        items=items,
        histories=torch.randint(1, N_ITEMS + 1, (m, k, 10)),
        times=torch.arange(10).expand(m, k, 10),
        target_rows=torch.zeros(m, k, dtype=torch.long),
        request=torch.full((m, k), 10),
        log_q=torch.full((m,), -3.0),
    )
    cfg = config(tiny_shards, tmp_path / "unused")
    without, _ = item_major_loss(model, batch, config(tiny_shards, tmp_path, align_weight=0), "cpu")
    with_align, _ = item_major_loss(model, batch, cfg, torch.device("cpu"))
    content, _ = model.item_tower.content_part(items)
    own = torch.nn.functional.normalize(model.item_tower.id_table(items.item_ids), dim=-1)
    diagonal = torch.arange(m)
    expected = info_nce(content, own, diagonal, items.item_ids, items.item_ids, model.temperature())
    assert torch.allclose(with_align - without, cfg.align_weight * expected, atol=1e-5)
    grads = []
    for weight in (0.0, 1.0):  # the alignment moves the content part, never the ids
        model.zero_grad()
        loss, _ = item_major_loss(
            model, batch, config(tiny_shards, tmp_path, align_weight=weight), "cpu"
        )
        loss.backward()
        grads.append(
            (
                model.user_tower.id_table.weight.grad.clone(),
                model.item_tower.project["audio"].weight.grad.clone(),
            )
        )
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-7)
    assert not torch.allclose(grads[0][1], grads[1][1], atol=1e-5)


def test_history_dropout_hides_items_behind_the_mask_token_in_training(tiny_shards, tmp_path):
    from mirkit.models.config import PRESETS
    from mirkit_train.objectives import hide_history_items, user_major_loss

    torch.manual_seed(0)
    histories = torch.randint(1, N_ITEMS + 1, (200, 20))
    histories[:, :5] = 0  # left padding
    hidden = hide_history_items(histories, 0.3, N_ITEMS + 1)
    changed = hidden != histories
    assert (hidden[changed] == N_ITEMS + 1).all() and not changed[:, :5].any()
    assert 0.25 < changed[:, 5:].float().mean() < 0.35
    assert torch.equal(hide_history_items(histories, 0.0, N_ITEMS + 1), histories)
    # wired into the loss: with every item hidden, what the history held no longer matters
    model = TwoTower(PRESETS["small"].with_modalities(("id",)), N_ITEMS).eval()
    targets = torch.randint(1, N_ITEMS + 1, (200, 20))
    other = torch.where(histories > 0, histories % N_ITEMS + 1, 0)
    log_pop = torch.zeros(N_ITEMS + 1)
    times = torch.arange(20).expand(200, 20)
    losses = {}
    for p in (0.0, 1.0):
        cfg = config(tiny_shards, tmp_path, modalities=("id",), history_dropout=p)
        rest = (N_ITEMS, log_pop, cfg, None)
        losses[p] = [
            user_major_loss(model, (h, targets, times, times + 1), "full-softmax", *rest)[0]
            for h in (histories, other)
        ]
    assert not torch.allclose(losses[0.0][0], losses[0.0][1])
    assert torch.allclose(losses[1.0][0], losses[1.0][1])
    # and into the item-major loss
    from mirkit.models.item_tower import ItemBatch
    from mirkit_train.item_major import ItemMajorBatch
    from mirkit_train.objectives import item_major_loss

    def item_major(h: torch.Tensor) -> ItemMajorBatch:
        return ItemMajorBatch(
            items=ItemBatch(item_ids=torch.arange(1, 11)),
            histories=h[:40].view(10, 4, 20),
            times=torch.arange(20).expand(10, 4, 20),
            target_rows=torch.zeros(10, 4, dtype=torch.long),
            request=torch.full((10, 4), 20),
            log_q=torch.full((10,), -3.0),
        )

    for p, same in ((0.0, False), (1.0, True)):
        cfg = config(tiny_shards, tmp_path, modalities=("id",), history_dropout=p)
        a, b = (item_major_loss(model, item_major(h), cfg, "cpu")[0] for h in (histories, other))
        assert torch.allclose(a, b) == same


def test_a_flipped_byte_in_a_shard_stops_training_before_the_first_step(tiny_shards, tmp_path):
    shards = tmp_path / "damaged"
    shutil.copytree(tiny_shards, shards)
    shard = shards / "items" / "items-000003.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(TrainingError, match="items-000003.tar: size or sha256 differs"):
        train(config(shards, tmp_path / "run", modalities=("audio", "id")))
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_tabular_features_keep_the_training_scaling_after_tracks_are_appended(
    tiny_shards, tmp_path
):
    """Serving standardises an item's numeric features with the mean and std of the
    catalogue the model was trained on (saved with the run), so appending tracks with
    other values leaves every old item's features - and so its embedding - unchanged."""
    from mirkit.data.content import tabular_columns, tabular_scaling
    from mirkit.serving.runs import TrainedRun

    run = tmp_path / "tabular"
    train(config(tiny_shards, run, modalities=("tabular", "id"), epochs=1, max_steps_per_epoch=2))
    trained = TrainedRun.open(run)
    catalog = pl.read_parquet(tiny_shards / "catalog.parquet")
    n = int(catalog["item_id"].max())
    extreme = catalog.head(5).with_columns(
        pl.col("item_id") + n, pl.col("tempo") * 10, pl.col("duration_ms") * 50
    )
    grown = pl.concat([catalog, extreme])
    before, after = trained.tabular(catalog), trained.tabular(grown)
    assert np.array_equal(before[: n + 1], after[: n + 1])
    columns = tabular_columns(catalog)
    assert trained.record["tabular_scaling"] == tabular_scaling(catalog, columns)
    assert tabular_scaling(grown, columns) != tabular_scaling(catalog, columns)


def test_the_history_scorers_learn_at_their_own_rate(tiny_shards, tmp_path):
    """`scorer_lr_scale` gives the repeat and continuation parts their own learning rate
    (and only them); frozen parts get none."""
    net = TwoTower(ModelConfig(modalities=("id",), n_artists=3, n_albums=4), N_ITEMS)
    cfg = config(tiny_shards, tmp_path / "run", scorer_lr_scale=10.0)
    fast, slow = parameter_groups(net, cfg)[::-1]
    scorers = {
        id(p) for m in (net.user_tower.repeat, net.user_tower.continuation) for p in m.parameters()
    }
    assert {id(p) for p in fast["params"]} == scorers and fast["lr"] == 10 * cfg.lr
    assert not scorers & {id(p) for p in slow["params"]} and slow["lr"] == cfg.lr
    net.user_tower.requires_grad_(False)
    assert [g["lr"] for g in parameter_groups(net, cfg)] == [cfg.lr]  # the item tower's
