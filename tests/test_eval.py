"""`mirkit eval`: metrics on toy rankings, baselines on a toy log, the bootstrap, the
cold slice, the sampled protocol, and complete report files from a real tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mirkit.cli import main
from mirkit.data.plays import PlayArrays, SplitConfig, make_split
from mirkit.evaluation.metrics import target_ranks
from mirkit.evaluation.protocol import (
    BASELINES,
    Targets,
    baseline_ranks,
    candidate_ranks,
    load_targets,
    paired_bootstrap,
    per_target,
    sampled_candidates,
    slices,
)
from mirkit.serving.index import INDEX_FILE, ItemIndex
from mirkit.serving.runs import TrainedRun
from mirkit_train.train import train
from tests.test_train import config


def toy_targets() -> Targets:
    """Two users, five items; the last play of each user is the test target."""
    items = np.array([1, 1, 2, 1, 3, 4, 4, 2, 4, 5], dtype=np.int32)
    plays = PlayArrays(np.array([0, 5, 10]), items, np.arange(10, dtype=np.int64) * 100)
    split = make_split(plays, SplitConfig())
    counts = np.bincount(items[split.train_rows], minlength=6)
    return Targets(split, split.test_rows, items[split.test_rows].astype(np.int64), counts)


def test_metrics_on_toy_rankings_with_ties_and_exclusions():
    scores = np.array([[-np.inf, 0.5, 0.5, 0.2], [-np.inf, 0.9, 0.1, 0.1]])
    ranks = target_ranks(scores, np.array([2, 3]))
    assert ranks.tolist() == [2, 3]  # a tie ranks the target below its equals
    values = per_target(np.array([1, 2, 11]))
    assert values["Recall@10"].tolist() == [1, 1, 0]
    assert np.allclose(values["NDCG@10"], [1.0, 1 / np.log2(3), 0.0])
    assert np.allclose(values["MRR"], [1.0, 0.5, 1 / 11])
    excluded = scores.copy()
    excluded[1, 1] = -np.inf  # the user's history taken out of the ranking
    assert target_ranks(excluded, np.array([2, 3]))[1] == 2


def test_baselines_on_a_toy_log():
    targets = toy_targets()
    assert targets.items.tolist() == [3, 5]
    ranks, tops = baseline_ranks(targets, exclude_seen=False)
    # user 0 played 1, 1, 2, 1 before item 3: most-played puts 1 first, last-played 1 too;
    # user 1 played 4, 4, 2, 4 before item 5
    assert tops["user most-played"][0][:2].tolist() == [1, 2]
    assert tops["last-played"][0][0] == 1 and tops["last-played"][1][0] == 4
    # training targets (the last two plays of each user held out, the first is no
    # target): 1, 2 and 4, 2 -> most-popular order 2, then 1 and 4 (ties by id), then
    # the unplayed 3, 5
    assert tops["most-popular"][0][:3].tolist() == [2, 1, 4]
    assert ranks["most-popular"].tolist() == [4, 5]
    ranks, _ = baseline_ranks(targets, exclude_seen=True)
    assert ranks["most-popular"].tolist() == [2, 3]  # history items drop out ahead of it


def test_windows_and_seen_items_of_many_rows_are_those_of_each_row():
    split = toy_targets().split
    rows = np.array([4, 1, 9, 5, 0])  # users' first, middle and last rows, out of order
    items, times = split.windows(rows, 3)
    which, seen = split.seen_before(rows)
    for r, row in enumerate(rows):
        before = split.plays_before(int(row))
        assert seen[which == r].tolist() == before.tolist()
        kept = before[-3:]
        assert items[r].tolist() == [0] * (3 - len(kept)) + kept.tolist()
        first = int(row) - len(kept)
        assert times[r, 3 - len(kept) :].tolist() == split.plays.times[first : int(row)].tolist()


def test_sampled_protocol_is_fixed_by_its_seed_and_ignores_played_items():
    targets = toy_targets()
    seen = sampled_candidates(targets, negatives=2, seed=3)
    first = candidate_ranks(-seen.astype(float))  # lower ids score higher
    again = candidate_ranks(-sampled_candidates(targets, negatives=2, seed=3).astype(float))
    assert np.array_equal(first, again)
    for r, ids in enumerate(seen):
        assert ids[0] == targets.items[r] and len(ids) == 3
        assert not set(ids[1:].tolist()) & (set(targets.history(r).tolist()) | {ids[0]})


def test_bootstrap_interval_covers_a_known_difference():
    rng = np.random.default_rng(1)
    b = rng.random(2000)
    a = b + 0.1 + rng.normal(0, 0.2, 2000)
    diff, low, high = paired_bootstrap(a, b, samples=500)
    assert low < 0.1 < high and low > 0 and abs(diff - 0.1) < 0.02
    _, low, high = paired_bootstrap(b, b.copy(), samples=200)
    assert low == high == 0.0
    # targets that come in clusters (here 20 per user, sharing most of their
    # difference) make a wider interval than the same targets taken as independent
    users = np.repeat(np.arange(100), 20)
    clustered = b + np.repeat(rng.normal(0.1, 0.3, 100), 20)
    _, low_t, high_t = paired_bootstrap(clustered, b, samples=500)
    _, low_u, high_u = paired_bootstrap(clustered, b, samples=500, clusters=users)
    assert high_u - low_u > 2 * (high_t - low_t)


@pytest.fixture(scope="module")
def two_runs(tiny_shards, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    runs = []
    for name, modalities in (("mm", ("audio", "lyrics", "cover", "id")), ("ids", ("id",))):
        run = root / name
        train(
            config(
                tiny_shards,
                run,
                modalities=modalities,
                split="global-time",
                epochs=1,
                batch_size=4,
                max_steps_per_epoch=6,
            )
        )
        result = CliRunner().invoke(main, ["index", "--run", str(run)])
        assert result.exit_code == 0, result.output
        runs.append(run)
    return runs


def test_cold_slice_items_have_no_training_plays(two_runs, tiny_shards):
    run = TrainedRun.open(two_runs[0])
    targets = load_targets(run, tiny_shards, "test")
    masks = slices(targets)
    cold = masks["cold items"]
    assert cold.any(), "the tiny corpus's global-time test targets include new releases"
    items = np.asarray(targets.split.plays.items)
    assert not set(targets.items[cold].tolist()) & set(items[targets.split.train_rows].tolist())
    assert (targets.train_counts[targets.items[~cold]] > 0).all()
    assert (masks["warm items"] == ~cold).all()
    # the content model's user tower reads cold items of histories by their index rows
    index = ItemIndex.load(run.path / INDEX_FILE)
    plain = run.load_user_tower().id_table.weight.detach()
    reading = run.load_user_tower(catalogue=index.embeddings).id_table.weight.detach()
    changed = (plain != reading).any(dim=1).numpy()
    cold_ids = np.flatnonzero(targets.train_counts == 0)
    assert changed.any() and set(np.flatnonzero(changed)) <= set(cold_ids.tolist())
    assert (masks["repeat"] | masks["discovery"]).all() and not (
        masks["repeat"] & masks["discovery"]
    ).any()


def test_eval_writes_complete_reports_and_runs_compare(two_runs):
    mm, ids = two_runs
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--run",
            str(mm),
            "--baseline",
            str(ids),
            "--sampled-negatives",
            "20",
            "--bootstrap",
            "200",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((mm / "eval-test.json").read_text())
    methods = {"mm", "ids", *BASELINES}
    assert set(report["metrics"]) == methods and set(report["vs_model"]) == methods - {"mm"}
    for values in report["metrics"].values():
        assert {"all", "repeat", "discovery", "cold items", "popularity: head"} <= set(values)
        assert {"Recall@10", "NDCG@10", "Recall@50", "NDCG@50", "MRR", "n"} <= set(values["all"])
    assert report["metrics"]["mm"]["all"]["n"] == report["n_targets"] > 0
    interval = report["vs_model"]["most-popular"]["all"]["NDCG@10"]
    assert interval["low"] <= interval["difference"] <= interval["high"]
    assert set(report["beyond_accuracy"]["mm"]) == {
        "coverage",
        "mean popularity (x catalogue mean)",
        "artist diversity",
    }
    assert "NOT comparable" in report["sampled"]["protocol"]
    markdown = (mm / "eval-test.md").read_text()
    for heading in ("## All targets", "## Slices", "paired bootstrap", "## Beyond accuracy"):
        assert heading in markdown
    assert (mm / "eval-test.png").read_bytes()[:4] == b"\x89PNG"

    result = CliRunner().invoke(main, ["runs", "compare", str(mm), str(ids)])
    assert result.exit_code == 0, result.output
    assert "model.modalities" in result.output and "test NDCG@10" in result.output


def test_runs_compare_groups_runs_that_differ_only_by_seed(two_runs, tiny_shards):
    mm, ids = two_runs
    root = ids.parent
    again = []
    for seed in (1, 2):
        for name, base in (("ids", ids), ("ids-norepeat", None)):
            run = root / f"{name}-seed{seed}"
            options = {"repeat": False} if base is None else {}
            train(
                config(
                    tiny_shards,
                    run,
                    modalities=("id",),
                    split="global-time",
                    epochs=1,
                    batch_size=4,
                    max_steps_per_epoch=6,
                    seed=seed,
                    **options,
                )
            )
            again.append(run)
    result = CliRunner().invoke(main, ["runs", "compare", *map(str, again)])
    assert result.exit_code == 0, result.output
    groups = [line for line in result.output.splitlines() if line.startswith("| model.repeat=")]
    assert len(groups) == 3  # two groups of two seeds, and one line of differences
    assert "| 2 |" in groups[0] and "/2 > 0" in groups[2]


@pytest.mark.parametrize("which", [0, 1])
def test_validation_and_eval_on_the_validation_split_agree(two_runs, which):
    """The trainer's best validation NDCG@10 is what `mirkit eval --split val` measures
    on the saved best model: one ranking path for both."""
    run = two_runs[which]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = max(r["val_NDCG@10"] for r in rows if "val_NDCG@10" in r)
    result = CliRunner().invoke(main, ["eval", "--run", str(run), "--split", "val"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval-val.json").read_text())
    assert report["metrics"][run.name]["all"]["NDCG@10"] == pytest.approx(best, abs=1e-6)


def test_recency_frequency_ranks_played_tracks_first_then_popularity():
    """ACT-R: played tracks by activation (recent and frequent first), then every unplayed
    track by its play count - with exact popularity order even when history is excluded
    (a huge offset once rounded the counts away and tied every unplayed item)."""
    from mirkit.evaluation.baselines import popularity, recency_frequency

    pop = popularity(np.array([0, 1, 1, 10, 11, 12, 0]))  # counts 1 apart
    scores = recency_frequency(np.array([1, 2, 1]), np.array([0, 50, 90]), 100, pop)
    played_order = np.argsort(-scores)[:2].tolist()
    assert played_order == [1, 2]  # item 1: two plays, one 10 s ago; item 2: one, 50 s ago
    assert np.argsort(-scores)[2:5].tolist() == [5, 4, 3]  # then by popularity, untied
    assert len(set(scores[3:6].tolist())) == 3
