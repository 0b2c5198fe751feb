"""The model library: towers, fusion, losses (incl. a real 2-process gloo run), metrics."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mirkit.errors import OptionError
from mirkit.evaluation.baselines import last_played, popularity, user_most_played
from mirkit.evaluation.metrics import rank_scores
from mirkit.models.blocks import Blocks, Dropout
from mirkit.models.config import PRESETS, TextConfig
from mirkit.models.item_tower import ItemBatch
from mirkit.models.losses import (
    ROWS_PER_CHUNK,
    chunked_cross_entropy,
    full_softmax_loss,
    gathered_info_nce,
    info_nce,
    seen_so_far,
)
from mirkit.models.resnet import MissingWeights
from mirkit.models.text import TextEncoder, lora_target_modules
from mirkit.models.two_tower import TwoTower

SMALL = PRESETS["small"]
N_ITEMS, VOCAB = 50, 300


def batch(m: int = 6, frames: int = 96, tokens: int = 20, seed: int = 0) -> ItemBatch:
    g = torch.Generator().manual_seed(seed)
    return ItemBatch(
        item_ids=torch.arange(1, m + 1),
        mel=torch.randn(m, 128, frames, generator=g) * 10 - 40,
        mel_frames=torch.full((m,), frames),
        tokens=torch.randint(5, VOCAB, (m, tokens), generator=g),
        token_mask=torch.ones(m, tokens, dtype=torch.bool),
        cover=torch.randn(m, 3, 64, 64, generator=g),
        has_cover=torch.ones(m, dtype=torch.bool),
        tabular=torch.randn(m, 3, generator=g),
    )


def model(modalities=("audio", "lyrics", "cover", "tabular", "id"), **changes) -> TwoTower:
    torch.manual_seed(0)
    config = replace(SMALL, modalities=modalities, n_tabular=3, **changes)
    return TwoTower(config, N_ITEMS, VOCAB).eval()


def test_shapes_and_dtypes():
    m = model()
    items = m.items(batch())
    assert items.shape == (6, SMALL.dim) and items.dtype == torch.float32
    assert torch.allclose(items.norm(dim=1), torch.ones(6))
    history = torch.randint(0, N_ITEMS + 1, (4, 12))
    assert m.users(history).shape == (4, SMALL.dim)
    assert m.user_tower.sequence(history).shape == (4, 12, SMALL.dim)
    _, mass = m.item_tower.encode(batch(), explain=True)
    assert set(mass) == {"id"}  # warm items of a content-for-cold model: their id rows
    assert torch.allclose(mass["id"], torch.ones(6))
    _, mass = model(content_for="all").item_tower.encode(batch(), explain=True)
    assert set(mass) == {"audio", "lyrics", "cover", "tabular", "id", "none"}
    assert torch.allclose(sum(mass.values()), torch.ones(6), atol=1e-5)


def test_masked_modalities_have_no_influence():
    m = model(content_for="all")  # every item reads its content
    clean = batch()
    clean.mel_frames[0] = 0  # item 1: no audio
    clean.token_mask[1] = False  # item 2: instrumental
    clean.has_cover[2] = False  # item 3: no cover
    clean.mel_frames[3] = 40  # item 4: a short clip, padded after 40 frames
    garbage = ItemBatch(**vars(clean))
    garbage.mel = clean.mel.clone()
    garbage.mel[0] = 1e4
    garbage.mel[3, :, 40:] = -1e4
    garbage.tokens = clean.tokens.clone()
    garbage.tokens[1] = 7
    garbage.cover = clean.cover.clone()
    garbage.cover[2] = 1e3
    with torch.no_grad():
        assert torch.allclose(m.items(clean), m.items(garbage), atol=1e-6)
        _, mass = m.item_tower.encode(clean, explain=True)
    assert mass["audio"][0] == 0 and mass["lyrics"][1] == 0 and mass["cover"][2] == 0


def test_cold_items_do_not_use_their_id():
    m = model()
    b = batch()
    m.item_tower.set_warm_items(torch.tensor([1, 2, 3]))
    with torch.no_grad():
        before = m.items(b)
        m.item_tower.id_table.weight[1:7] += 5.0  # ids 1..3 are warm, 4..6 cold
        after = m.items(b)
    assert torch.allclose(before[3:], after[3:], atol=1e-6)
    assert not torch.allclose(before[:3], after[:3])


def test_repeated_items_are_encoded_once():
    m = model(content_for="all")  # every item reads its content
    sizes = []
    m.item_tower.audio.register_forward_hook(lambda mod, args, out: sizes.append(len(args[0])))
    b = batch()
    repeated = b.select(torch.tensor([0, 1, 0, 2, 1, 0]))
    with torch.no_grad():
        out = m.items(repeated)
    assert sizes == [3]
    assert torch.allclose(out[0], out[2]) and torch.allclose(out[1], out[4])


def test_sasrec_is_causal_and_ignores_padding():
    m = model(("id",))
    history = torch.randint(1, N_ITEMS + 1, (3, 10))
    changed = history.clone()
    changed[:, 6:] = torch.randint(1, N_ITEMS + 1, (3, 4))
    with torch.no_grad():
        a, b = m.user_tower.sequence(history), m.user_tower.sequence(changed)
        assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
        assert not torch.allclose(a[:, 6:], b[:, 6:])
        padded = torch.cat([torch.zeros(3, 5, dtype=torch.long), history[:, 5:]], dim=1)
        shorter = torch.cat([torch.zeros(3, 2, dtype=torch.long), history[:, 5:]], dim=1)
        assert torch.isfinite(m.user_tower.sequence(padded)).all()
        # more left padding does not change the user: positions count from the most recent
        assert torch.allclose(m.users(padded), m.users(shorter), atol=1e-5)
        unknown = history.clone()
        unknown[:, -1] = N_ITEMS + 999  # unseen ids share the out-of-vocabulary row
        oov = history.clone()
        oov[:, -1] = N_ITEMS + 1
        assert torch.allclose(m.users(unknown), m.users(oov))


def test_blocks_compute_what_the_torch_encoder_computes_at_real_positions():
    """Same parameter names (checkpoints load either way), same first weights, the same
    outputs wherever a position is not padding - though the feed-forward half skips it."""
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(
        16, 2, 64, 0.1, activation="gelu", batch_first=True, norm_first=True
    )
    reference = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    torch.manual_seed(0)
    blocks = Blocks(2, 16, 2, 64, 0.1).eval()
    assert list(blocks.state_dict()) == list(reference.state_dict())
    assert all(map(torch.equal, blocks.state_dict().values(), reference.state_dict().values()))
    ids = torch.randint(1, 9, (3, 6))
    ids[0, :2], ids[1, :5] = 0, 0
    causal = torch.triu(torch.ones(6, 6, dtype=torch.bool), 1)
    mask = (
        causal[None] | ((ids == 0)[:, None, :] & ~torch.eye(6, dtype=torch.bool))
    ).repeat_interleave(2, 0)
    x = torch.randn(3, 6, 16)
    with torch.no_grad():
        expected, got = reference(x, mask=mask), blocks(x, mask, ids > 0)
    assert torch.allclose(got[ids > 0], expected[ids > 0], atol=1e-6)


def test_dropout_drawn_from_uniforms_keeps_the_mean_and_drops_a_share_p():
    dropout, x = Dropout(0.3), torch.ones(200_000)
    y = dropout(x)
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.01
    assert abs(float(y.mean()) - 1.0) < 0.02  # kept values are scaled by 1 / (1 - p)
    assert torch.unique(y).tolist() == pytest.approx([0.0, 1 / 0.7])
    assert torch.equal(dropout.eval()(x), x)


def test_cold_history_items_enter_the_user_tower_by_their_embedding():
    tower = model().user_tower
    before = tower.id_table.weight.detach().clone()
    cold = torch.tensor([3, 7])
    embeddings = torch.randn(2, SMALL.dim)
    tower.read_cold_items_as(cold, embeddings)
    after = tower.id_table.weight.detach()
    trained = [i for i in range(1, N_ITEMS + 1) if i not in (3, 7)]
    assert torch.equal(after[trained], before[trained])
    scale = before[trained].norm(dim=-1).median()
    assert torch.allclose(after[cold], F.normalize(embeddings, dim=-1) * scale)


def test_reading_cold_items_lasts_only_the_block():
    """Training validation reads cold history items by content, then gives the shared id
    table back unchanged to the item tower and the optimiser."""
    m = model()
    m.item_tower.set_warm_items(torch.arange(1, 6))  # ids 6.. are cold
    table = torch.randn(N_ITEMS + 1, SMALL.dim)
    history = torch.tensor([[1, 2, 7], [1, 2, 3]])  # 7 is cold
    weights = {k: v.clone() for k, v in m.state_dict().items()}
    outside = m.users(history)
    with m.reading_cold_items(table):
        inside = m.users(history)
        assert torch.allclose(
            m.user_tower.id_table.weight[7],
            F.normalize(table[7], dim=-1) * m.user_tower.id_table.weight[1:6].norm(dim=-1).median(),
        )
    assert not torch.allclose(inside[0], outside[0]) and torch.allclose(inside[1], outside[1])
    assert all(torch.equal(v, weights[k]) for k, v in m.state_dict().items())
    ids_only = model(("id",))
    ids_only.item_tower.set_warm_items(torch.arange(1, 6))
    with ids_only.reading_cold_items(table):  # no content: nothing to read cold items by
        assert torch.equal(
            ids_only.user_tower.id_table.weight[7], model(("id",)).user_tower.id_table.weight[7]
        )


def test_id_only_model_is_plain_sasrec():
    m = model(("id",))
    assert m.item_tower.audio is None and m.item_tower.text is None
    b = ItemBatch(item_ids=torch.tensor([3, 4, 3]))
    out = m.items(b)
    assert torch.allclose(out[0], out[2]) and not torch.allclose(out[0], out[1])
    assert m.user_tower.id_table is m.item_tower.id_table  # one table, shared
    rows = F.normalize(m.user_tower.id_table.weight[[3, 4, 3]], dim=-1)
    assert torch.allclose(out, rows)  # the item is its (normalised) id row, no fusion layer


def naive_info_nce(users, items, labels, row_ids, col_ids, scale, log_q=None):
    total = 0.0
    for r in range(len(users)):
        logits = []
        for c in range(len(items)):
            if c != labels[r] and col_ids[c] == row_ids[r]:
                continue  # an accidental hit is not a negative
            value = scale * float(users[r] @ items[c])
            logits.append((c, value - (float(log_q[c]) if log_q is not None else 0.0)))
        denominator = np.log(sum(np.exp(v) for _, v in logits))
        positive = dict(logits)[int(labels[r])]
        total += denominator - positive
    return total / len(users)


def test_info_nce_matches_a_naive_reference_with_accidental_hits():
    g = torch.Generator().manual_seed(3)
    users = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    items = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    col_ids = torch.tensor([10, 11, 10, 12])  # item 10 appears twice
    labels = torch.tensor([0, 1, 2, 3, 0, 2])
    row_ids = col_ids[labels]
    log_q = torch.log(torch.tensor([0.4, 0.3, 0.4, 0.1]))
    scale = torch.tensor(1 / 0.07)
    for q in (None, log_q):
        got = info_nce(users, items, labels, row_ids, col_ids, scale, q)
        want = naive_info_nce(users, items, labels, row_ids, col_ids, float(scale), q)
        assert float(got) == pytest.approx(want, rel=1e-5)


def _toy_towers(seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Linear(5, 8), torch.nn.Linear(5, 8)


def _toy_data():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 5, generator=g), torch.randn(4, 5, generator=g)
    item_ids = torch.tensor([1, 2, 3, 1])  # item 1 on both ranks: masked across ranks
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])  # rank r's rows use its own 2 items
    return x, y, item_ids, labels


def _rank_worker(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    user_net, item_net = _toy_towers()
    x, y, item_ids, labels = _toy_data()
    xs, ys, ids, lab = (
        x[rank * 4 : (rank + 1) * 4],
        y[rank * 2 : (rank + 1) * 2],
        item_ids[rank * 2 : (rank + 1) * 2],
        labels[rank * 4 : (rank + 1) * 4],
    )
    users, items = F.normalize(user_net(xs), dim=1), F.normalize(item_net(ys), dim=1)
    loss = gathered_info_nce(users, items, lab, ids[lab], ids, torch.tensor(5.0))
    loss.backward()
    for p in (*user_net.parameters(), *item_net.parameters()):  # what DDP does
        dist.all_reduce(p.grad)
        p.grad /= world
    total = loss.detach().clone()
    dist.all_reduce(total)
    if rank == 0:
        torch.save(
            {
                "loss": total / world,
                "grads": [p.grad for p in (*user_net.parameters(), *item_net.parameters())],
            },
            out,
        )
    dist.destroy_process_group()


def test_seen_items_leave_the_full_softmax_but_never_the_target():
    inputs = torch.tensor([[0, 2, 5, 2], [1, 3, 4, 6]])
    rows = torch.tensor([[False, True, False, True], [False, False, False, True]])
    row, item = seen_so_far(inputs, rows)
    seen = [sorted(item[row == r].tolist()) for r in range(3)]
    assert seen == [[2], [2, 2, 5], [1, 3, 4, 6]]  # padding is never an item
    assert torch.all(row[1:] >= row[:-1])
    torch.manual_seed(0)
    hidden, table = torch.randn(3, 8), torch.randn(7, 8)
    targets = torch.tensor([2, 4, 6])
    excluded = (torch.tensor([0, 0, 1, 1, 1]), torch.tensor([2, 3, 1, 6, 6]))
    scale = torch.tensor(2.0)  # the target of row 0 (item 2) is kept regardless
    logits = 2.0 * hidden @ table[1:].T
    expected = torch.stack(
        [
            -torch.log_softmax(logits[0, [0, 1, 3, 4, 5]], 0)[1],
            -torch.log_softmax(logits[1, [1, 2, 3, 4]], 0)[2],
            -torch.log_softmax(logits[2], 0)[5],
        ]
    ).mean()
    got = full_softmax_loss(hidden, table, targets, scale, excluded)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, full_softmax_loss(hidden, table, targets, scale))


def test_the_chunked_cross_entropy_equals_the_assembled_logits_and_their_gradients():
    """Logits made a chunk of rows at a time, with a dense extra term, placed entries
    (some places twice, some rows without any) and excluded places: the loss and every
    input's gradient are those of `F.cross_entropy` over the whole assembled matrix."""
    torch.manual_seed(0)
    n, c, d = 2 * ROWS_PER_CHUNK + 37, 50, 8
    queries, table, extra = torch.randn(n, d), torch.randn(c, d), torch.randn(n, c)
    labels = torch.randint(0, c, (n,))
    rows = torch.sort(torch.randint(0, n // 2, (300,))).values  # none in the last rows
    columns = torch.randint(0, c, (300,))
    columns[1], rows[1] = columns[0], rows[0]  # a place reached twice
    values = torch.randn(300)
    excluded = torch.rand(n, c) < 0.2
    excluded[torch.arange(n), labels] = False
    inputs = [t.clone().requires_grad_(True) for t in (queries, table, extra, values)]
    got = chunked_cross_entropy(
        *inputs[:2],
        labels,
        inputs[2],
        excluded.nonzero(as_tuple=True),
        [(rows, columns, inputs[3])],
    )
    got.backward()
    reference = [t.clone().requires_grad_(True) for t in (queries, table, extra, values)]
    logits = reference[0] @ reference[1].T + reference[2]
    logits = logits.index_put((rows, columns), reference[3], accumulate=True)
    expected = F.cross_entropy(logits.masked_fill(excluded, float("-inf")), labels)
    expected.backward()
    assert torch.allclose(got, expected, atol=1e-5)
    for mine, theirs in zip(inputs, reference, strict=True):
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-6), mine.shape


def test_gathered_loss_over_two_gloo_ranks_equals_single_process(tmp_path):
    out = str(tmp_path / "ranks.pt")
    mp.spawn(_rank_worker, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    ranked = torch.load(out)

    user_net, item_net = _toy_towers()
    x, y, item_ids, labels = _toy_data()
    users, items = F.normalize(user_net(x), dim=1), F.normalize(item_net(y), dim=1)
    global_labels = labels + torch.arange(2).repeat_interleave(4) * 2
    loss = info_nce(
        users, items, global_labels, item_ids[global_labels], item_ids, torch.tensor(5.0)
    )
    loss.backward()
    assert float(ranked["loss"]) == pytest.approx(loss.item(), rel=1e-5)
    single = [p.grad for p in (*user_net.parameters(), *item_net.parameters())]
    for got, want in zip(ranked["grads"], single, strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_frozen_text_backbone_trains_only_lora_and_heads():
    m = model(("lyrics",)).train()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    optimizer = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1.0)
    b = batch()
    users = m.users(torch.randint(1, N_ITEMS + 1, (6, 8)))
    loss = info_nce(users, m.items(b), torch.arange(6), b.item_ids, b.item_ids, m.temperature())
    loss.backward()
    optimizer.step()
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    backbone = {n for n in before if ".text." in n and "lora_" not in n}
    assert not changed & backbone
    assert any("lora_" in n for n in changed)
    assert "item_tower.head.weight" in changed and "item_tower.project.lyrics.weight" in changed


def test_save_and_reload_give_identical_embeddings(tmp_path):
    m = model()
    m.item_tower.set_warm_items(torch.tensor([1, 2]))
    history = torch.randint(0, N_ITEMS + 1, (4, 12))
    with torch.no_grad():
        items, users = m.items(batch()), m.users(history)
    m.save(tmp_path / "model")
    again = TwoTower.load(tmp_path / "model").eval()
    with torch.no_grad():
        assert torch.equal(again.items(batch()), items)
        assert torch.equal(again.users(history), users)


def test_hugging_face_models_load_from_a_directory_with_lora_targets(tiny_bert):
    directory, tokenizer = tiny_bert
    encoder = TextEncoder(TextConfig(model=str(directory), lora_rank=2))
    assert set(encoder.model.peft_config["default"].target_modules) == {"query", "key", "value"}
    ids = torch.tensor([tokenizer("amor corazón")["input_ids"]])
    states, mask = encoder(ids, torch.ones_like(ids, dtype=torch.bool))
    assert states.shape == (1, ids.shape[1], 32) and mask.all()
    deberta = TwoTower(replace(SMALL, modalities=("lyrics",)), N_ITEMS, VOCAB).item_tower.text
    assert set(deberta.model.peft_config["default"].target_modules) == {
        "query_proj",
        "key_proj",
        "value_proj",
    }
    with pytest.raises(ValueError, match="cannot find attention projections"):
        lora_target_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_missing_pretrained_weights_fail_with_the_fix(tmp_path, monkeypatch):
    with pytest.raises(MissingWeights, match="not available offline.*config:small"):
        TextEncoder(TextConfig(model=str(tmp_path / "no-model")))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    with pytest.raises(MissingWeights, match="resnet18-f37072fd.pth.*'none'"):
        TwoTower(PRESETS["full"].with_modalities(("cover",)), N_ITEMS)


def test_ranks_are_pessimistic_and_exclude_the_history_but_never_the_target():
    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.0], [0.9, 0.0]])
    scores = torch.tensor([[1.0, 0.0]] * 3) @ items.T
    targets = torch.tensor([1, 3, 4])
    assert rank_scores(scores.clone(), targets).tolist() == [2, 4, 3]  # 1 ties with 2
    exclude = (torch.tensor([0, 0, 1, 1, 2]), torch.tensor([2, 1, 1, 2, 4]))
    assert rank_scores(scores, targets, exclude).tolist() == [1, 2, 3]


def test_baselines_on_a_toy_log():
    train = np.array([1, 1, 1, 2, 2, 3])
    pop = popularity(np.bincount(train, minlength=5))
    assert np.argsort(-pop)[:4].tolist() == [1, 2, 3, 4] and pop[0] == -np.inf
    own = user_most_played(np.array([3, 3, 2]), pop)
    assert np.argsort(-own)[:3].tolist() == [3, 2, 1]
    last = last_played(np.array([3, 2]), pop)
    assert np.argsort(-last)[:2].tolist() == [2, 1]


def test_warm_items_are_their_id_row_plus_weighted_content():
    m = model(content_for="all")
    b = batch()
    tower = m.item_tower.eval()
    with torch.no_grad():
        content, _ = tower.content_part(b)
        own = F.normalize(tower.id_table(b.item_ids), dim=-1)
        tower.log_content_weight.fill_(-30.0)  # no content: the id-only model's embedding
        assert torch.allclose(m.items(b), own, atol=1e-5)
        tower.log_content_weight.fill_(0.0)  # equal weights: halfway between the parts
        assert torch.allclose(m.items(b), F.normalize(own + content, dim=-1), atol=1e-5)
        tower.set_warm_items(torch.tensor([], dtype=torch.long))  # cold: content alone
        assert torch.allclose(m.items(b), content, atol=1e-5)
        tower.log_cold_scale.fill_(math.log(0.5))  # at the learned cold scale
        assert torch.allclose(m.items(b), 0.5 * content, atol=1e-5)


def test_content_for_cold_items_keeps_warm_items_at_their_id_row():
    """content_for="cold": a warm item is its trained id row alone (the id-only model's
    embedding, whatever the content says); a cold item is its content; explanations
    give warm items all to the id."""
    m = model(content_for="cold")
    b = batch()
    tower = m.item_tower.eval()
    tower.set_warm_items(torch.tensor([1, 2, 3]))  # 4..6 cold
    with torch.no_grad():
        content, _ = tower.content_part(b)
        own = F.normalize(tower.id_table(b.item_ids), dim=-1)
        items, mass = tower.encode(b, explain=True)
        assert torch.allclose(items[:3], own[:3], atol=1e-6)
        assert torch.allclose(items[3:], content[3:], atol=1e-5)
        assert torch.allclose(mass["id"], torch.tensor([1.0, 1, 1, 0, 0, 0]))
        tower.log_content_weight.fill_(3.0)  # the content weight no longer reaches warm items
        assert torch.allclose(m.items(b)[:3], own[:3], atol=1e-6)
    with pytest.raises(OptionError, match="choose all or cold"):
        model(content_for="warm")
