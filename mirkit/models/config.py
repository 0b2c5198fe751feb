"""Model configuration and the two size presets.

`full` is the seed's model (ResNet-18 on mels and covers, mDeBERTa-v3-base with LoRA r=8);
`small` is the same architecture narrow and shallow, for CPUs, the demo and tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from mirkit.errors import OptionError

MODALITIES = ("audio", "lyrics", "cover", "tabular", "id")


@dataclass(frozen=True)
class ResNetConfig:
    """torchvision ResNet-18 (`widths` 64..512, `blocks` 2,2,2,2) or a narrower one."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)


@dataclass(frozen=True)
class TextConfig:
    """`model`: a local directory or a hub name in the local cache, or `config:small` for a
    tiny DeBERTa-v2 built from a config (random weights, vocabulary of the shards)."""

    model: str = "microsoft/mdeberta-v3-base"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    freeze_backbone: bool = True
    gradient_checkpointing: bool = False
    max_tokens: int = 512


@dataclass(frozen=True)
class ModelConfig:
    modalities: tuple[str, ...] = ("audio", "lyrics", "cover", "id")
    dim: int = 256
    """Width of the shared embedding space and of the fusion tokens."""
    fusion_heads: int = 4
    audio: ResNetConfig = field(default_factory=ResNetConfig)
    image: ResNetConfig = field(default_factory=ResNetConfig)
    image_weights: str = "imagenet"  # or "none"
    text: TextConfig = field(default_factory=TextConfig)
    mel_frames: int = 1292
    """Frames of log-mel the audio encoder sees (crops of longer clips; 1292 = 30 s)."""
    cover_size: int = 224
    n_tabular: int = 0
    id_dropout: float = 0.3
    """Probability of hiding an item's id token in training, so content carries the load."""
    content_for: str = "cold"
    """Which items' embeddings read content: "cold" (a warm item is its trained id row
    alone, as in DropoutNet and ALDI; content stands in where there is no trained id:
    cold items, and dropped ids in training) or "all" (a warm item's id part plus its
    content part). "cold" was higher on validation in each of 3 seeds (BENCHMARKS.md,
    "Content for cold items only")."""
    share_id_table: bool = True
    """One id table for the user tower's inputs and the item tower's id token."""
    user_blocks: int = 2
    user_heads: int = 4
    max_len: int = 200
    dropout: float = 0.1
    n_profile: int = 0
    temperature: float = 0.07
    time_inputs: bool = True
    """The user tower reads the time gap before each play and before the request."""
    repeat: bool = True
    """The user tower scores the history's tracks as candidates to play again."""
    continuation: bool = True
    """The user tower scores the tracks of the history's artists and albums (with artist
    or album rows only): the repeat part's learned recency and frequency, per artist and
    per album instead of per track."""
    reweigh_history: bool = True
    """The repeat part also sets, from the user state, how much a history track's own
    catalogue score counts, so the user's tracks can be ranked by recency and frequency
    more than by taste (BENCHMARKS.md: the tail and discoveries gain)."""
    floored_activation: bool = True
    """The repeat and continuation parts take log(1 + the sum of a track's play weights)
    as its activation, not log(sum): a track played long ago keeps the played-before
    bonus instead of sinking below tracks never played (BENCHMARKS.md)."""
    repeat_memory: int = 0
    """Plays the repeat part reads when more than max_len (the Transformer reads the last
    max_len of them); it costs memory^2 per user. 0: max_len, chosen on validation (200
    plays was 0.004 below 50 on the demo in both seeds tried; with the floored activation,
    -0.002 on leave-one-out and +0.003 on global-time, seed 0; BENCHMARKS.md)."""
    freshness: bool = False
    """The user tower weighs items by how long ago anyone first played them. Off by
    default: it costs a [positions x items] bucket lookup per full-softmax step (the one
    demo run with it took 1.6x as long) for a validation gain inside the seed spread
    (BENCHMARKS.md)."""
    n_artists: int = 0
    """Artists and albums of the catalogue (0: none): their rows join the id table."""
    n_albums: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown or not self.modalities:
            raise OptionError(
                f"modalities {sorted(unknown) or '(none)'} are not known; "
                f"choose from {', '.join(MODALITIES)}"
            )
        if self.content_for not in ("all", "cold"):
            raise OptionError(f"--content-for {self.content_for!r}: choose all or cold")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        values = dict(values)
        for key, kind in (("audio", ResNetConfig), ("image", ResNetConfig), ("text", TextConfig)):
            if isinstance(values.get(key), dict):
                inner = {k: tuple(v) if isinstance(v, list) else v for k, v in values[key].items()}
                values[key] = kind(**inner)
        values["modalities"] = tuple(values.get("modalities", ()))
        for part in (
            "time_inputs",
            "repeat",
            "continuation",
            "freshness",
            "reweigh_history",
            "floored_activation",
        ):  # models saved before these parts existed
            values.setdefault(part, False)
        values.setdefault("repeat_memory", 0)
        values.setdefault("content_for", "all")  # models saved before the option
        return cls(**values)

    def with_modalities(self, modalities: tuple[str, ...]) -> ModelConfig:
        return replace(self, modalities=tuple(modalities))


PRESETS: dict[str, ModelConfig] = {
    "full": ModelConfig(),
    "small": ModelConfig(
        dim=64,
        fusion_heads=4,
        audio=ResNetConfig(widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1)),
        image=ResNetConfig(widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1)),
        image_weights="none",
        mel_frames=256,
        cover_size=96,
        text=TextConfig(model="config:small", lora_rank=4, lora_alpha=8, max_tokens=128),
        user_blocks=2,
        user_heads=2,
        max_len=50,
    ),
}
