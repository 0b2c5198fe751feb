"""`mirkit eval`: full-ranking evaluation of a run beside honest baselines.

Every method (the run, other runs given as baselines, most-popular, the user's own
most-played, last-played) ranks the whole catalogue for every target of the split the
run was trained with; ties are pessimistic; baselines see training plays only (their
popularity) plus the user's own history before the target. Metrics are kept per target,
so slices and paired bootstrap intervals come from the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mirkit.data.plays import Split, SplitConfig, load_plays, make_split
from mirkit.evaluation.baselines import (
    last_played,
    popularity,
    recency_frequency,
    user_most_played,
    user_transitions,
)
from mirkit.evaluation.metrics import rank_scores, target_ranks, top_items
from mirkit.ids import ItemIds
from mirkit.models.user_tower import SASRec
from mirkit.serving.index import load_run_index
from mirkit.serving.runs import RunError, TrainedRun

KS = (10, 20, 50)
TOP_K = 10  # the list length for the beyond-accuracy measures
BASELINES = (
    "most-popular",
    "user most-played",
    "last-played",
    "recency-frequency (ACT-R)",
    "user transitions",
)


@dataclass
class Targets:
    """The evaluated plays: rows of the split, their items and the users' histories."""

    split: Split
    rows: np.ndarray
    items: np.ndarray
    train_counts: np.ndarray  # [n_items + 1] training plays per item

    def history(self, r: int) -> np.ndarray:
        """Every play of the user before target r (not only max_len)."""
        return self.split.plays_before(int(self.rows[r]))


def load_targets(run: TrainedRun, shards: Path, which: str, limit: int = 0) -> Targets:
    train = run.record["train"]
    manifest_fp = run.record["shards_fingerprints"]["interactions"]
    config = SplitConfig(train["split"], drop_repeats=train["drop_repeats"], k_core=train["k_core"])
    split = make_split(load_plays(shards, manifest_fp), config)
    rows = split.test_rows if which == "test" else split.val_rows
    if limit and len(rows) > limit:
        rows = np.sort(np.random.default_rng(0).choice(rows, limit, replace=False))
    n_items = run.n_items
    return targets_of(split, rows, n_items)


def targets_of(split: Split, rows: np.ndarray, n_items: int) -> Targets:
    """The plays at `rows` as targets, with the training play counts of every item."""
    rows = np.asarray(rows)
    items = np.asarray(split.plays.items)[rows].astype(np.int64)
    return Targets(split, rows, items, split.train_counts(n_items))


def per_target(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Recall@K, NDCG@K and reciprocal rank of every target."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {f"Recall@{k}": (ranks <= k).astype(np.float64) for k in KS}
    out |= {f"NDCG@{k}": np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0) for k in KS}
    out["MRR"] = 1.0 / ranks
    return out


def slices(targets: Targets) -> dict[str, np.ndarray]:
    """Boolean masks over the targets: all, repeats (the user played the item before),
    discoveries, popularity buckets by the item's training plays (head = the most played
    items that make up half of all training plays, torso = the next 30 %, tail = the
    rest with at least one play), warm items (at least one training play) and cold items
    (none at all)."""
    repeat = np.array([t in set(targets.history(r).tolist()) for r, t in enumerate(targets.items)])
    counts = targets.train_counts
    order = np.argsort(-counts, kind="stable")
    share = np.cumsum(counts[order]) / max(1, counts.sum())
    bucket = np.empty(len(counts), dtype=object)
    bucket[order] = np.where(share <= 0.5, "head", np.where(share <= 0.8, "torso", "tail"))
    bucket[counts == 0] = "cold"
    of_target = bucket[targets.items]
    masks = {"all": np.ones(len(targets.items), dtype=bool), "repeat": repeat, "discovery": ~repeat}
    for name in ("head", "torso", "tail"):
        masks[f"popularity: {name}"] = of_target == name
    masks["warm items"] = of_target != "cold"
    masks["cold items"] = of_target == "cold"
    return masks


def baseline_scores(targets: Targets, r: int, pop: np.ndarray) -> dict[str, np.ndarray]:
    """Each baseline's scores of every item for target r: they see the training plays
    (popularity) and the user's own plays before the target, with their times."""
    history = targets.history(r)
    row = int(targets.rows[r])
    times = np.asarray(targets.split.plays.times[row - len(history) : row])
    request = int(targets.split.plays.times[row])
    return {
        "most-popular": pop.copy(),
        "user most-played": user_most_played(history, pop),
        "last-played": last_played(history, pop),
        "recency-frequency (ACT-R)": recency_frequency(history, times, request, pop),
        "user transitions": user_transitions(history, pop),
    }


def baseline_ranks(
    targets: Targets, exclude_seen: bool, top_k: int = TOP_K
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(ranks, top-K lists) of the baselines."""
    n = len(targets.train_counts) - 1
    pop = popularity(targets.train_counts)
    ranks = {name: np.empty(len(targets.items), dtype=np.int64) for name in BASELINES}
    k = min(top_k, n)
    tops = {name: np.empty((len(targets.items), k), dtype=np.int64) for name in BASELINES}
    for r, target in enumerate(targets.items):
        if exclude_seen:
            seen = np.unique(targets.history(r))
            seen = seen[seen != target]
        for name, scores in baseline_scores(targets, r, pop).items():
            if exclude_seen:
                scores[seen] = -np.inf
            ranks[name][r] = target_ranks(scores[None], np.array([target]))[0]
            if k:
                tops[name][r] = top_items(scores, k)
    return ranks, tops


SCORE_BUDGET = 1 << 25
"""Most scores held at once while ranking (128 MB of float32): a block of targets times
the catalogue. Evaluation's memory grows with the catalogue only through the item
table, never with the number of targets."""


def score_block(n_items: int) -> int:
    """Targets scored together against a catalogue of `n_items`: 512, or fewer where the
    catalogue is large (33 at a million items)."""
    return max(1, min(512, SCORE_BUDGET // max(1, n_items)))


@torch.no_grad()
def model_scores(
    tower: SASRec, split: Split, rows: np.ndarray, items: torch.Tensor
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(positions [b] in `rows`, scores [b, V]) in blocks (`score_block`): `SASRec.score`
    of each target's history, at the target's time, against the item table `items`
    [V, dim]. Blocks hold histories of similar length, so that the tower's work follows
    the plays, not the padding (`SASRec.score` drops columns that are padding in every
    row): most of the catalogue's users have short histories."""
    tower.eval()
    times = np.asarray(split.plays.times)
    block = score_block(len(items))
    lengths = np.minimum(rows - split.user_start(rows), tower.history_len)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(rows), block):
        positions = order[start : start + block]
        chunk = rows[positions]
        history, played = (
            torch.from_numpy(a).to(items.device) for a in split.windows(chunk, tower.history_len)
        )
        request = torch.from_numpy(times[chunk]).to(items.device)
        yield positions, tower.score(history, items, played, request)


def model_ranks(
    tower: SASRec,
    split: Split,
    rows: np.ndarray,
    items: torch.Tensor,
    exclude_seen: bool,
    top_k: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(ranks [T], top-K lists [T, top_k]) of the targets at `rows` among the items of
    `items` (row 0 = padding): the one ranking of training validation and `mirkit eval`."""
    targets = torch.from_numpy(np.asarray(split.plays.items)[rows].astype(np.int64))
    ranks = np.zeros(len(rows), dtype=np.int64)
    top = np.zeros((len(rows), top_k), dtype=np.int64)
    for positions, scores in model_scores(tower, split, rows, items):
        exclude = None
        if exclude_seen:
            exclude = tuple(
                torch.from_numpy(a).to(scores.device) for a in split.seen_before(rows[positions])
            )
        target = targets[positions].to(scores.device)
        ranks[positions] = rank_scores(scores, target, exclude).cpu().numpy()
        if top_k:
            top[positions] = scores.topk(top_k, dim=1).indices.cpu().numpy()
    return ranks, top


def run_ranks(
    run: TrainedRun, targets: Targets, exclude_seen: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(ranks, top-K lists) of a trained run, from its user tower and its index."""
    index = load_run_index(run)
    tower = run.load_user_tower(catalogue=index.embeddings)
    items = torch.from_numpy(index.embeddings[: run.ids.rows])
    return model_ranks(tower, targets.split, targets.rows, items, exclude_seen, TOP_K)


def sampled_candidates(targets: Targets, negatives: int, seed: int = 0) -> np.ndarray:
    """The SASRec paper's sampled protocol: [T, 1 + negatives] item ids, each target then
    `negatives` items drawn uniformly from those the user never played before it
    (`candidate_ranks` ranks the target among them)."""
    rng = np.random.default_rng(seed)
    n = len(targets.train_counts) - 1
    out = np.empty((len(targets.items), 1 + negatives), dtype=np.int64)
    for r, target in enumerate(targets.items):
        seen = set(targets.history(r).tolist()) | {int(target)}
        drawn: list[int] = []
        while len(drawn) < negatives:
            candidates = rng.integers(1, n + 1, size=2 * negatives)
            drawn += [int(c) for c in candidates if int(c) not in seen][: negatives - len(drawn)]
        out[r] = [target, *drawn]
    return out


def candidate_ranks(scores: np.ndarray) -> np.ndarray:
    """The rank of column 0 among each row's scores [T, C] (pessimistic ties)."""
    return (scores >= scores[:, :1]).sum(axis=1)


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    samples: int = 1000,
    seed: int = 0,
    clusters: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """mean(a - b) and its 95 % percentile interval (a paired comparison: the same
    targets for both methods). With `clusters` (e.g. the user of each target) whole
    clusters are resampled with replacement, as targets of one user are not independent;
    without, single targets are."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not len(diff):
        return float("nan"), float("nan"), float("nan")
    if clusters is None:
        clusters = np.arange(len(diff))
    _, cluster = np.unique(clusters, return_inverse=True)
    sums = np.bincount(cluster, weights=diff)
    sizes = np.bincount(cluster).astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for i in range(samples):
        drawn = rng.integers(0, len(sums), len(sums))
        means[i] = sums[drawn].sum() / sizes[drawn].sum()
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def beyond_accuracy(
    top: np.ndarray, train_counts: np.ndarray, artists: np.ndarray
) -> dict[str, float]:
    """Catalogue coverage of the top-K lists, the mean training plays of recommended
    items (relative to the catalogue's mean), and the distinct artists per list / K."""
    n = len(train_counts) - 1
    flat = top[top > 0]
    return {
        "coverage": float(len(np.unique(flat)) / max(1, n)),
        "mean popularity (x catalogue mean)": float(
            train_counts[flat].mean() / max(1e-9, train_counts[1:].mean())
        )
        if len(flat)
        else float("nan"),
        "artist diversity": float(np.mean([len(set(artists[row[row > 0]])) / TOP_K for row in top]))
        if len(top)
        else float("nan"),
    }


def check_comparable(run: TrainedRun, other: TrainedRun) -> None:
    for name in ("interactions", "id_map"):
        if run.record["shards_fingerprints"][name] != other.record["shards_fingerprints"][name]:
            raise RunError(
                f"{other.path} was trained on other shards than {run.path} ({name} "
                f"differs): a baseline run must share the shards"
            )
    if run.record["train"]["split"] != other.record["train"]["split"]:
        raise RunError(
            f"{other.path} used the {other.record['train']['split']} split, {run.path} the "
            f"{run.record['train']['split']} split: compare runs on the same split"
        )


def artists_by_id(catalog: pl.DataFrame, n_items: int) -> np.ndarray:
    out = np.full(ItemIds(n_items).rows, "", dtype=object)
    known = catalog.filter(pl.col("item_id") <= n_items)
    out[known["item_id"].to_numpy()] = known["artist"].fill_null("").to_list()
    return out


def evaluate_run(
    run_path: Path,
    which: str = "test",
    exclude_seen: bool = False,
    baselines: tuple[Path, ...] = (),
    sampled_negatives: int = 0,
    bootstrap: int = 1000,
    limit: int = 0,
    cluster_by_user: bool = True,
) -> dict:
    """The whole report as a dict (see `mirkit.evaluation.report` for the files)."""
    run = TrainedRun.open(run_path)
    shards = run.shards()
    _, catalog = run.check_shards(shards)
    targets = load_targets(run, shards, which, limit)
    methods: dict[str, np.ndarray] = {}
    tops: dict[str, np.ndarray] = {}
    name = run_path.name
    methods[name], tops[name] = run_ranks(run, targets, exclude_seen)
    for other_path in baselines:
        other = TrainedRun.open(other_path)
        check_comparable(run, other)
        methods[other_path.name], tops[other_path.name] = run_ranks(other, targets, exclude_seen)
    ranks, top = baseline_ranks(targets, exclude_seen)
    methods |= ranks
    tops |= top

    masks = slices(targets)
    users = targets.split.plays.user_of_rows()[targets.rows]
    metrics = {m: per_target(r) for m, r in methods.items()}
    table = {
        m: {
            s: {k: float(v[mask].mean()) if mask.any() else None for k, v in values.items()}
            | {"n": int(mask.sum())}
            for s, mask in masks.items()
        }
        for m, values in metrics.items()
    }
    differences = {}
    for other in methods:
        if other == name:
            continue
        differences[other] = {
            s: {
                metric: dict(
                    zip(
                        ("difference", "low", "high"),
                        paired_bootstrap(
                            metrics[name][metric][mask],
                            metrics[other][metric][mask],
                            bootstrap,
                            clusters=users[mask] if cluster_by_user else None,
                        ),
                        strict=True,
                    )
                )
                for metric in ("NDCG@10", "Recall@10")
            }
            for s, mask in masks.items()
            if mask.any()
        }
    artists = artists_by_id(catalog, run.n_items)
    report = {
        "run": str(run_path),
        "split": run.record["train"]["split"],
        "targets": which,
        "exclude_seen": exclude_seen,
        "bootstrap": f"{bootstrap} resamples of "
        + ("users (all targets of a user together)" if cluster_by_user else "targets"),
        "n_targets": int(len(targets.rows)),
        "n_items": run.n_items,
        "metrics": table,
        "vs_model": differences,
        "beyond_accuracy": {
            m: beyond_accuracy(t, targets.train_counts, artists) for m, t in tops.items()
        },
    }
    if sampled_negatives:
        report["sampled"] = _sampled(run, targets, sampled_negatives)
    return report


def _sampled(run: TrainedRun, targets: Targets, negatives: int) -> dict:
    """The sampled protocol for the run and most-popular (labelled as such)."""
    index = load_run_index(run)
    tower = run.load_user_tower(catalogue=index.embeddings)
    items = torch.from_numpy(index.embeddings[: run.ids.rows])
    candidates = sampled_candidates(targets, negatives)
    scores = np.empty(candidates.shape, dtype=np.float32)  # never targets x catalogue
    for positions, block in model_scores(tower, targets.split, targets.rows, items):
        scores[positions] = block.gather(1, torch.from_numpy(candidates[positions])).numpy()
    model = candidate_ranks(scores)
    popular = candidate_ranks(popularity(targets.train_counts)[candidates])
    return {
        "protocol": f"target vs {negatives} sampled unplayed items - NOT comparable with "
        f"full ranking",
        run.path.name: {k: float(v.mean()) for k, v in per_target(model).items()},
        "most-popular": {k: float(v.mean()) for k, v in per_target(popular).items()},
    }
