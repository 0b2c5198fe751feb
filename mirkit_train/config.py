"""Training options: everything `mirkit train` can be told, with defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

PATHS = ("auto", "user-major", "item-major")
LOSSES = ("auto", "full-softmax", "sampled-softmax", "in-batch")


@dataclass
class TrainConfig:
    shards: str
    run: str
    preset: str = "small"
    modalities: tuple[str, ...] = ()  # () = the preset's
    text_model: str | None = None
    lora_rank: int | None = None
    max_len: int | None = None
    dropout: float | None = None
    time_inputs: bool = True  # the user tower reads the gaps between plays and to the request
    repeat: bool = True  # the user tower scores the history's tracks as candidates to replay
    repeat_memory: int | None = None  # plays the repeat part reads (None = the preset's)
    freshness: bool = False  # items weighed by how long ago anyone first played them
    artists: bool = True  # artist and album rows join the id table (catalogues with artists)
    split: str = "leave-one-out"
    drop_repeats: bool = False
    k_core: int = 0
    path: str = "auto"  # id-only models: user-major; content models: item-major
    loss: str = "auto"  # user-major: full-softmax; item-major: in-batch
    logq: bool = True
    contexts: int = 4  # K histories per item (item-major)
    items_per_batch: int = 64  # M distinct items per batch and rank (item-major)
    emission_cap: float = 8.0  # max expected emissions of one item per pass
    align_weight: float = 1.0  # content-to-id alignment loss (models with content and ids)
    batch_size: int = 128  # sequences per batch (user-major)
    shift_windows: bool = False  # user-major: window cuts drawn anew each epoch
    history_dropout: float = 0.0  # chance of hiding each training-history item (mask token)
    sampled_negatives: int = 512
    epochs: int = 10
    max_steps_per_epoch: int = 0  # 0 = a full pass
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    bf16: bool = True  # autocast on CUDA only
    gradient_checkpointing: bool = False
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    val_limit: int = 20_000
    exclude_seen: bool = False
    mask_seen: bool = False  # full softmax: a window's earlier items are not negatives
    early_stopping: int = 0  # epochs without a better NDCG@10; 0 = never stop early
    resume: bool = False
    init_from: str | None = None  # a run whose best model's matching weights start this one
    freeze: tuple[str, ...] = ()  # parts kept as they start, e.g. user_tower (with --init-from)
    shard_urls: tuple[str, ...] = ()  # () = the shards directory's own files

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known
        }
        return cls(**kwargs)
