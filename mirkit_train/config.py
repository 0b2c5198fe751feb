"""Training options: everything `mirkit train` can be told, with defaults and help.

Each field's help sits next to it (`option(default, help)`): `mirkit train --help`, the
TOML config and the run's config.json are all generated from this one class.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields

PATHS = ("auto", "user-major", "item-major")
LOSSES = ("auto", "full-softmax", "sampled-softmax", "in-batch")


def option(default=MISSING, help: str = ""):  # noqa: A002 (click's word for it)
    """A TrainConfig field with its command-line help."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    shards: str = option(help="The shards directory (mirkit shards build).")
    run: str = option(help="Run directory to write (config, metrics, checkpoints, curves).")
    preset: str = option("small", "Model size: small (CPU, demo, tests) or full (the seed's).")
    modalities: tuple[str, ...] = option(
        (), "Comma-separated subset of audio,lyrics,cover,tabular,id (id alone = SASRec; "
        "empty: the preset's)."
    )  # fmt: skip
    text_model: str | None = option(
        None, "HF model directory or cached hub name (default: the preset's)."
    )
    lora_rank: int | None = option(None, "LoRA rank of the text encoder (default: the preset's).")
    max_len: int | None = option(None, "Plays the user tower reads (default: the preset's).")
    dropout: float | None = option(None, "User tower dropout (default: the preset's).")
    time_inputs: bool = option(
        True, "The user tower reads the time gap before each play and before the request "
        "(log-scale buckets; logs without times use positions)."
    )  # fmt: skip
    repeat: bool = option(
        True, "The user tower scores each history track as a candidate to play again "
        "(learned recency and frequency, mixed in by the user state) beside the catalogue "
        "score; it learns to stay out of the way on data without repeats."
    )  # fmt: skip
    continuation: bool = option(
        True, "The user tower scores the tracks of the artists and albums the history holds "
        "(learned recency and frequency per artist and per album, mixed in by the user "
        "state), beside the catalogue score; needs artist or album rows (--artists)."
    )  # fmt: skip
    reweigh_history: bool = option(
        True, "The repeat part also sets, from the user state, how much each history "
        "track's own catalogue score counts (recency and frequency can then outrank taste "
        "among the user's tracks)."
    )  # fmt: skip
    floored_activation: bool = option(
        True, "The repeat and continuation parts score a track's recency and frequency as "
        "log(1 + the sum of its plays' learned weights), not log(sum): a track played long "
        "ago keeps the played-before bonus instead of sinking below tracks never played."
    )  # fmt: skip
    repeat_memory: int | None = option(
        None, "How many recent plays the repeat part reads, when more than max_len (the "
        "Transformer reads the last max_len of them); default: the preset's (max_len)."
    )  # fmt: skip
    freshness: bool = option(
        False, "Weigh each item by how long ago anyone first played it (its age in the log "
        "at the request time), per age as the user state says: new releases for listeners "
        "who look for them."
    )  # fmt: skip
    artists: bool = option(
        True, "Items share learned rows with the other tracks of their artist and album "
        "(normalised names from the catalogue), so a new track starts near its artist's."
    )  # fmt: skip
    content_for: str = option(
        "cold", "Which items' embeddings read content: cold (a warm item keeps its trained "
        "id row; content stands in where there is none) or all (a warm item's id part plus "
        "its content part)."
    )  # fmt: skip
    split: str = option("leave-one-out", "leave-one-out or global-time.")
    drop_repeats: bool = option(False, "Drop back-to-back repeats of a track from the plays.")
    k_core: int = option(0, "Keep only users and items with at least k plays (0: all).")
    path: str = option(
        "auto", "user-major (sequences; id-only models) or item-major (streamed item shards); "
        "auto: user-major for id-only models, item-major for content models."
    )  # fmt: skip
    loss: str = option(
        "auto", "full-softmax, sampled-softmax or in-batch; auto: full-softmax on the "
        "user-major path, in-batch on the item-major path."
    )  # fmt: skip
    logq: bool = option(True, "Correct in-batch logits for how often each item is sampled.")
    contexts: int = option(4, "K histories per item in an item-major batch.")
    items_per_batch: int = option(64, "M distinct items per item-major batch (per rank).")
    emission_cap: float = option(8.0, "Item-major: most expected emissions of one item per pass.")
    align_weight: float = option(
        1.0, "Item-major, models with content and ids: weight of the loss that asks each "
        "item's content to find its own id row."
    )  # fmt: skip
    batch_size: int = option(128, "Sequences per user-major batch (per rank).")
    shift_windows: bool = option(
        False, "User-major: cut long histories into windows at new places each epoch (a "
        "play is predicted after histories of different lengths). Better on data without "
        "repeats (LastFM); on the demo's plays it halved top-10 coverage."
    )  # fmt: skip
    history_dropout: float = option(
        0.0, "Training: hide each item of a history behind a mask token with this "
        "probability. Better on data without repeats (0.3 on LastFM); on the demo's plays, "
        "where repeats matter, it cost accuracy and coverage."
    )  # fmt: skip
    sampled_negatives: int = option(512, "Negatives per step of the sampled softmax.")
    epochs: int = option(10, "Passes over the training data.")
    max_steps_per_epoch: int = option(0, "Cap the steps of an epoch (0: a full pass).")
    lr: float = option(1e-3, "Peak learning rate (AdamW; linear warmup, cosine decay).")
    scorer_lr_scale: float = option(
        10.0, "Learning rate of the history scorers (the repeat, continuation and freshness "
        "parts) as a multiple of --lr: they are small and learn from every position, and "
        "early stopping follows the catalogue part, which overfits first (10 chosen on "
        "the demo's validation; 30 diverged in one seed of six)."
    )  # fmt: skip
    warmup_steps: int = option(100, "Steps of linear warmup (at most a tenth of training).")
    weight_decay: float = option(0.01, "AdamW weight decay.")
    grad_clip: float = option(1.0, "Clip the gradient norm to this (0: never).")
    bf16: bool = option(True, "bf16 autocast (CUDA only).")
    gradient_checkpointing: bool = option(False, "Recompute the text encoder's activations.")
    workers: int = option(2, "Loader processes per rank decoding item shards.")
    seed: int = option(0, "Seed of the initial weights, the batches and the dropout.")
    device: str = option("auto", "auto (CUDA when there is one), cpu, cuda or cuda:N.")
    val_limit: int = option(20_000, "Validation targets per epoch (a fixed random subset).")
    exclude_seen: bool = option(
        False, "Validation ranks without the user's earlier plays (published protocol)."
    )
    mask_seen: bool = option(
        False, "Full softmax: items earlier in a training window are not negatives (for "
        "data without repeats, e.g. the published seqrec benchmarks)."
    )  # fmt: skip
    early_stopping: int = option(
        0, "Stop after this many epochs without a better NDCG@10 (0: never)."
    )
    resume: bool = option(False, "Continue from the run's checkpoints/last.pt.")
    init_from: str | None = option(
        None, "Start from another run's best model: every weight whose name and shape match "
        "(e.g. the user tower and id table of an id-only run) is copied."
    )  # fmt: skip
    freeze: tuple[str, ...] = option(
        (), "Comma-separated model parts whose weights stay as they start (names of "
        "parameters start with them), e.g. user_tower (which holds the shared id table) to "
        "train only the content part of a model warm-started with --init-from."
    )  # fmt: skip
    shard_urls: tuple[str, ...] = option(
        (), "Comma-separated shard URLs (local paths or webdataset URLs such as pipe: "
        "commands) instead of the shards directory's own files."
    )  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known
        }
        return cls(**kwargs)
