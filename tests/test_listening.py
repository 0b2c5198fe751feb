"""What the user tower knows about listening, each on a toy log built for it and trained
with the real objective (user-major windows, full softmax) and ranked by the real scoring
function (`mirkit.evaluation.model_ranks`): repeats, their absence, session starts,
artists; and that `mirkit recommend` scores exactly as `mirkit eval` does."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from mirkit.data.plays import PlayArrays, Split, SplitConfig, first_play_times, make_split
from mirkit.evaluation.protocol import model_ranks, model_scores
from mirkit.models.config import PRESETS, ModelConfig
from mirkit.models.history import RepeatScorer
from mirkit.models.losses import ROWS_PER_CHUNK, full_softmax_loss
from mirkit.models.two_tower import TwoTower
from mirkit.models.user_tower import GroupBonus, spread_groups
from mirkit.serving.index import embeddable_items
from mirkit_train.objectives import user_major_loss
from mirkit_train.user_major import UserMajorBatches
from tests.test_scale import LargestOutputs
from tests.test_train import config

HOUR = 3600


def log_of(sequences: list[list[int]], times: list[list[int]] | None = None) -> PlayArrays:
    indptr = np.cumsum([0] + [len(s) for s in sequences]).astype(np.int64)
    items = np.concatenate(sequences).astype(np.int32)
    if times is None:
        times = [list(range(len(s))) for s in sequences]
    return PlayArrays(indptr, items, np.concatenate(times).astype(np.int64))


def trained(split: Split, n_items: int, steps: int, groups=None, **model) -> TwoTower:
    """A small id-only model trained for `steps` batches of the training windows."""
    torch.manual_seed(0)
    cfg = config("unused", "unused", modalities=("id",))
    small = PRESETS["small"].with_modalities(("id",))
    if groups is not None:
        model |= {"n_artists": int(groups[0].max()), "n_albums": int(groups[1].max())}
    net = TwoTower(dataclasses.replace(small, **model), n_items)
    if groups is not None:
        net.set_catalogue_groups(*(torch.from_numpy(g) for g in groups))
    if net.user_tower.freshness is not None:
        first = torch.from_numpy(first_play_times(split.plays, n_items))
        net.user_tower.freshness.set_first_played(first)
    warm = np.unique(np.asarray(split.plays.items)[split.train_rows])
    net.item_tower.set_warm_items(torch.from_numpy(warm.astype(np.int64)))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    batches = UserMajorBatches(split, net.config.max_len, 64, 0, shift_windows=False)
    log_pop = torch.zeros(n_items + 1)
    done, epoch = 0, 0
    net.train()
    while done < steps:
        for batch in batches.epoch(epoch):
            loss, _ = user_major_loss(net, batch, "full-softmax", n_items, log_pop, cfg, None)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
        epoch += 1
    return net.eval()


def table(net: TwoTower) -> torch.Tensor:
    """The index `mirkit index` would build: zero rows for items without anything to
    embed them from (no training plays, no artist)."""
    with torch.no_grad():
        rows = F.normalize(net.user_tower.id_table(torch.arange(net.n_items + 1)), dim=-1)
    usable = embeddable_items(net, pl.DataFrame({"item_id": np.arange(1, net.n_items + 1)}))
    return rows * torch.from_numpy(usable)[:, None]


def test_the_next_play_is_always_the_second_to_last_track():
    rng = np.random.default_rng(0)
    n_items = 300
    sequences = []
    for _ in range(400):
        a, b = rng.choice(np.arange(1, n_items + 1), 2, replace=False)
        sequences.append([int(a), int(b)] * 6)
    split = make_split(log_of(sequences), SplitConfig())
    net = trained(split, n_items, 150)
    ranks, _ = model_ranks(net.user_tower, split, split.test_rows, table(net), False)
    assert (ranks == 1).mean() > 0.9  # Recall@1


def test_the_repeat_part_can_take_a_history_tracks_catalogue_score_back_out():
    """With its third mixing weight g at 1 (and a = b = 0), a history track scores 0
    whatever its item row says, while every other track keeps its catalogue score; with
    g = 0 a history track keeps its catalogue score too."""
    torch.manual_seed(0)
    small = PRESETS["small"].with_modalities(("id",))
    tower = TwoTower(dataclasses.replace(small, time_inputs=False), 20).user_tower.eval()
    assert tower.repeat.reweighs  # the default
    history = torch.tensor([[0, 3, 7, 3, 5]])
    items = F.normalize(torch.randn(21, small.dim), dim=-1)
    moved = items.clone()
    moved[[3, 5, 7]] = F.normalize(torch.randn(3, small.dim), dim=-1)
    played = torch.tensor([3, 5, 7])
    with torch.no_grad():
        plain = tower.sequence(history)[:, -1] @ items.T
        tower.repeat.mix.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
        taken_out, again = tower.score(history, items), tower.score(history, moved)
        tower.repeat.mix.bias.zero_()
        kept = tower.score(history, items)
    others = torch.ones(21, dtype=torch.bool)
    others[played] = False
    assert torch.allclose(taken_out[0, played], torch.zeros(3), atol=1e-6)
    assert torch.allclose(again[0, played], torch.zeros(3), atol=1e-6)
    assert torch.allclose(taken_out[0, others], plain[0, others], atol=1e-6)
    assert torch.allclose(kept, plain, atol=1e-6)
    assert not torch.allclose(kept[0, played], taken_out[0, played])
    newer = ("reweigh_history", "floored_activation")
    saved_before = {k: v for k, v in dataclasses.asdict(small).items() if k not in newer}
    loaded = ModelConfig.from_dict(saved_before)  # its checkpoint loads, and scores as before
    assert not loaded.reweigh_history and not loaded.floored_activation


def test_a_track_played_long_ago_keeps_the_played_before_bonus():
    """The floored activation log(1 + sum of play weights) goes to 0 as the weights do, so
    an old track's bonus goes to b (played before: above tracks never played when b > 0);
    log(sum), the form of models saved before it, sinks without bound."""
    ids, times = torch.tensor([[4, 9, 6]]), torch.tensor([[1, 2, 3]])
    request, state = torch.tensor([[100]]), torch.zeros(1, 1, 8)

    def bonus(scorer: RepeatScorer, log_weight: float) -> torch.Tensor:
        """Every play weighs e^log_weight (a flat decay), a = 1, b = 0.5."""
        with torch.no_grad():
            for layer in (scorer.decay[0], scorer.decay[-1]):
                layer.weight.zero_()
            scorer.decay[-1].bias.fill_(log_weight)
            scorer.mix.bias.copy_(torch.tensor([1.0, 0.5]))
            return scorer(ids, times, request, state)[0, 0]

    floored, unfloored = RepeatScorer(8, floored=True), RepeatScorer(8)
    assert torch.allclose(bonus(floored, -40.0), torch.full((3,), 0.5))
    assert torch.allclose(bonus(floored, 0.0), torch.full((3,), 0.5 + math.log(2)))
    assert torch.allclose(bonus(unfloored, -40.0), torch.full((3,), -39.5))
    assert torch.allclose(bonus(unfloored, 0.0), torch.full((3,), 0.5))


def test_on_a_log_without_repeats_the_repeat_part_stays_out_of_the_way():
    rng = np.random.default_rng(1)
    n_items = 200
    sequences = [list(rng.permutation(np.arange(1, n_items + 1))[:12]) for _ in range(400)]
    split = make_split(log_of(sequences), SplitConfig())
    net = trained(split, n_items, 150)
    rows = split.val_rows
    items = table(net)
    history_mass, bonus = [], []
    with torch.no_grad():
        blocks = list(model_scores(net.user_tower, split, rows, items))
    for positions, scores in blocks:
        probabilities = torch.softmax(scores[:, 1:] * net.temperature().detach(), dim=1)
        for r, row in enumerate(rows[positions]):
            played = torch.from_numpy(split.plays_before(int(row))) - 1
            history_mass.append(float(probabilities[r, played].sum()))
            with torch.no_grad():
                plain = net.user_tower(*_window(split, row))
            bonus.append(float((scores[r, played + 1] - items[played + 1] @ plain[0]).mean()))
    assert np.mean(history_mass) < 0.02  # 11 of 200 items: 0.055 if nothing were learned
    assert np.mean(bonus) < 0  # the repeat part pushes played tracks down


def _window(split: Split, row: int):
    history, times = split.window(int(row), 50)
    request = torch.tensor([int(split.plays.times[row])])
    return torch.from_numpy(history)[None], None, torch.from_numpy(times)[None], request


def test_a_session_start_changes_the_prediction():
    """Sessions of random length open with track 1 and go on with track 2: only the time
    since the last play tells which comes next."""
    rng = np.random.default_rng(2)
    n_items = 30
    sequences, times = [], []
    for _ in range(300):
        seq, when, clock = [], [], 0
        for _session in range(int(rng.integers(2, 6))):
            clock += int(rng.integers(3, 30)) * HOUR
            for position in range(int(rng.integers(2, 6))):
                seq.append(1 if position == 0 else 2)
                when.append(clock)
                clock += int(rng.integers(120, 400))
        sequences.append(seq)
        times.append(when)
    split = make_split(log_of(sequences, times), SplitConfig())
    net = trained(split, n_items, 150)
    history = torch.tensor([[1, 2, 2, 1, 2]])
    played = torch.tensor([[0, 200, 400, 5 * HOUR, 5 * HOUR + 200]])
    items = table(net)
    last = 5 * HOUR + 200
    with torch.no_grad():
        soon = net.user_tower.score(history, items, played, torch.tensor([last + 300]))
        later = net.user_tower.score(history, items, played, torch.tensor([last + 8 * HOUR]))
    assert int(soon[0, 1:].argmax()) + 1 == 2 and int(later[0, 1:].argmax()) + 1 == 1
    without = trained(split, n_items, 50, time_inputs=False, repeat=False)
    with torch.no_grad():
        soon = without.user_tower.score(history, items, played, torch.tensor([last + 300]))
        later = without.user_tower.score(history, items, played, torch.tensor([last + 8 * HOUR]))
    assert torch.equal(soon, later)  # without either part the tower is blind to the gap


def test_a_cold_track_of_a_known_artist_ranks_among_that_artists_tracks():
    rng = np.random.default_rng(3)
    artists, per_artist = 20, 10
    n_items = artists * per_artist
    artist_of = np.zeros(n_items + 2, dtype=np.int64)
    artist_of[1 : n_items + 1] = np.repeat(np.arange(1, artists + 1), per_artist)
    cold = {a: 1 + (a - 1) * per_artist for a in range(1, artists + 1)}  # never played
    sequences = []
    for _ in range(400):
        a = int(rng.integers(1, artists + 1))
        tracks = np.arange(cold[a] + 1, cold[a] + per_artist)
        sequences.append([int(t) for t in rng.choice(tracks, 8)])
    split = make_split(log_of(sequences), SplitConfig())
    groups = (artist_of, np.zeros_like(artist_of))
    net = trained(split, n_items, 150, groups=groups)
    items = table(net)
    hits = 0
    for a, track in cold.items():
        history = torch.from_numpy(np.arange(track + 1, track + 6))[None]
        with torch.no_grad():
            scores = net.user_tower.score(history, items)[0, 1:]
        others = artist_of[1 : n_items + 1] != a
        hits += bool(scores[track - 1] > scores[torch.from_numpy(others)].max())
    assert hits >= 0.8 * artists
    without = trained(split, n_items, 150)
    items = table(without)
    history = torch.from_numpy(np.arange(cold[1] + 1, cold[1] + 6))[None]
    with torch.no_grad():
        scores = without.user_tower.score(history, items)[0, 1:]
    assert int((scores > scores[cold[1] - 1]).sum()) > per_artist  # ids alone cannot


def test_new_releases_reach_the_listeners_who_look_for_them():
    """Every day one new track comes out (a first listener plays it as the day starts);
    each listener, on each day they are active, plays two older tracks and then the
    newest one. Only how long ago anyone first played a track tells which one is new."""
    rng = np.random.default_rng(4)
    days, day = 120, 24 * HOUR
    sequences = [list(range(1, days + 1))]
    times = [[d * day for d in range(1, days + 1)]]
    for _ in range(150):
        first = int(rng.integers(3, days - 8))
        seq, when = [], []
        for d in range(first, first + 8):
            clock = d * day + int(rng.integers(1, 12)) * HOUR
            seq += [int(i) for i in rng.integers(1, d, 2)] + [d]
            when += [clock, clock + 300, clock + 600]
        sequences.append(seq)
        times.append(when)
    split = make_split(log_of(sequences, times), SplitConfig())
    warm = np.zeros(days + 1, dtype=bool)
    warm[np.asarray(split.plays.items)[split.train_rows]] = True
    rows = split.test_rows[warm[np.asarray(split.plays.items)[split.test_rows]]]
    hits = {}
    for freshness in (True, False):
        net = trained(split, days, 150, freshness=freshness)
        ranks, _ = model_ranks(net.user_tower, split, rows, table(net), False)
        hits[freshness] = (ranks <= 3).mean()
    # measured: 0.08 (12 of 151) with freshness, 0.007 (1) without: the other plays are
    # random older tracks, which the id part learns to guess at and which blur the list
    assert len(rows) > 100 and hits[True] >= 0.05 and hits[True] > 4 * hits[False], hits
    assert not PRESETS["small"].freshness  # an option; the default is off (BENCHMARKS.md)


@pytest.mark.parametrize("repeat", [True, False])
def test_logs_without_times_train_and_score(repeat):
    """A seqrec-style log (positions for times) and no artists: the same path works."""
    sequences = [[1, 2, 3, 4, 5, 6], [2, 3, 4, 5, 6, 7], [3, 4, 5, 6, 7, 8]] * 20
    split = make_split(log_of(sequences), SplitConfig())
    net = trained(split, 8, 5, repeat=repeat)
    ranks, top = model_ranks(net.user_tower, split, split.test_rows, table(net), False, 3)
    assert ranks.min() >= 1 and top.shape == (len(split.test_rows), 3)


def test_the_rest_of_the_album_comes_next():
    """Listeners play albums through, each in its own random order: the next play is a
    track of the last play's album not played yet. The continuation part gives the
    tracks of the history's albums a bonus no other track gets, and that bonus is what
    ranks the rest of the last album first."""
    rng = np.random.default_rng(5)
    albums, per_album = 30, 6
    n_items = albums * per_album
    album_of = np.zeros(n_items + 2, dtype=np.int64)
    album_of[1 : n_items + 1] = np.repeat(np.arange(1, albums + 1), per_album)
    sequences = []
    for _ in range(300):
        chosen = rng.choice(np.arange(albums), 3, replace=False)
        sequences.append([int(1 + a * per_album + t) for a in chosen for t in rng.permutation(6)])
    split = make_split(log_of(sequences), SplitConfig())
    net = trained(split, n_items, 150, groups=(np.zeros_like(album_of), album_of))
    assert list(net.user_tower.continuation) == ["album"]  # no artists: albums only
    items = table(net)
    with_bonus, without = [], []
    for row in split.test_rows:  # the one track of the album not played yet
        history, _, times, request = _window(split, row)
        with torch.no_grad():
            scores = net.user_tower.score(history, items, times, request)[0]
            states = net.user_tower.sequence(history, None, times, request)[:, -1:]
            parts = net.user_tower.group_bonus(history, states, times, request)
        bonus = spread_groups(parts, torch.arange(n_items + 1))[0, 0]
        target = int(split.plays.items[row])
        heard = torch.from_numpy(np.isin(album_of[: n_items + 1], album_of[history[0]]))
        heard[0] = False
        assert bool((bonus[~heard] == 0).all()) and bool((bonus[heard] != 0).all())
        for ranked, out in ((scores, with_bonus), (scores - bonus, without)):
            out.append(int((ranked[1:] > ranked[target]).sum()) + 1)
    with_bonus, without = np.array(with_bonus), np.array(without)
    assert (with_bonus == 1).mean() > 0.8 and (with_bonus == 1).mean() > (without == 1).mean()


def test_the_continuation_bonus_is_placed_item_by_item_without_catalogue_tables():
    """In training, a history's artists and albums reach a few of the catalogue's items:
    their bonus goes straight to those items' logits (the loss and gradients of
    spreading a per-group table over every column) and no [rows, catalogue] or [rows,
    groups] tensor is built, forward or backward; a few huge groups take the per-group
    table instead."""
    torch.manual_seed(0)
    n_items, n_groups, rows, length = 3000, 400, ROWS_PER_CHUNK + 44, 20
    hidden, table = torch.randn(rows, 8), torch.randn(n_items + 1, 8)
    targets = torch.randint(1, n_items + 1, (rows,))
    scale = torch.tensor(2.0)
    for huge_group in (False, True):
        group_of = torch.randint(1, n_groups, (n_items + 2,))
        group_of[0], group_of[5:50] = 0, 0  # tracks without a group
        if huge_group:
            group_of[1:2000] = 7
        groups = group_of[torch.randint(1, 80, (rows, length))]  # groups played twice
        bonus = torch.randn(rows, length, requires_grad=True)
        part = GroupBonus(bonus, groups, group_of, n_groups)
        with LargestOutputs() as seen:  # forward and backward
            loss = full_softmax_loss(hidden, table, targets, scale, groups=[part])
            (placed,) = torch.autograd.grad(loss, bonus)
        logits = scale * (
            hidden @ table[1:].T + spread_groups([part], torch.arange(1, n_items + 1))
        )
        expected = F.cross_entropy(logits, targets - 1)
        (spread,) = torch.autograd.grad(expected, bonus)
        assert torch.allclose(loss, expected, atol=1e-5) and spread.abs().sum() > 0
        assert torch.allclose(placed, spread, atol=1e-6)
        tables = [s for s in seen.shapes if s in {(rows, n_items), (rows, n_groups)}]
        assert bool(tables) == huge_group, tables
