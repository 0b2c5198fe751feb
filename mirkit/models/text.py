"""The lyrics encoder: any Hugging Face encoder with LoRA adapters (peft).

LoRA target modules are found by looking at the model's own linear layers, so DeBERTa
(`query_proj`...), BERT (`query`...), DistilBERT (`q_lin`...) or Llama-style models
(`q_proj`...) all work without a per-model table in the trainer.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from mirkit.errors import OptionError
from mirkit.models.config import TextConfig
from mirkit.models.resnet import MissingWeights

# peft calls an API that transformers 5 deprecates; nothing for our users to act on
warnings.filterwarnings(
    "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
)

ATTENTION_NAMES = [
    ("query_proj", "key_proj", "value_proj"),  # DeBERTa-v2/v3
    ("query", "key", "value"),  # BERT, RoBERTa, XLM-R, ELECTRA
    ("q_proj", "k_proj", "v_proj"),  # Llama, Mistral, BART, many others
    ("q_lin", "k_lin", "v_lin"),  # DistilBERT
    ("c_attn",),  # GPT-2
    ("qkv",),  # fused projections
]


def lora_target_modules(model: nn.Module) -> list[str]:
    """The attention projections of `model`, by the names its linear layers carry."""
    leaf_names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    }
    for names in ATTENTION_NAMES:
        if set(names) <= leaf_names:
            return list(names)
    raise OptionError(
        f"cannot find attention projections for LoRA in {type(model).__name__}; its linear "
        f"layers are named {sorted(leaf_names)}"
    )


def small_text_config(vocab_size: int, pad_token_id: int = 0):
    """A tiny DeBERTa-v2 (same family as mDeBERTa) for CPUs, the demo and tests."""
    from transformers import DebertaV2Config

    return DebertaV2Config(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=64,
        pos_att_type=["p2c", "c2p"],
        pad_token_id=pad_token_id,
    )


def mdeberta_v3_base_config():
    """mDeBERTa-v3-base's published architecture (random weights: for sizing and speed
    measurements only, never for quality)."""
    from transformers import DebertaV2Config

    return DebertaV2Config(
        vocab_size=251000,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=256,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        type_vocab_size=0,
    )


def load_backbone(config: TextConfig, vocab_size: int | None = None):
    """The Hugging Face encoder `config.model` names, offline only. `config:small` and
    `config:mdeberta-v3-base` build an architecture from a config with random weights."""
    from transformers import AutoModel

    if config.model == "config:small":
        if vocab_size is None:
            raise OptionError("config:small needs the vocabulary size of the shards' tokenizer")
        return AutoModel.from_config(small_text_config(vocab_size))
    if config.model == "config:mdeberta-v3-base":
        return AutoModel.from_config(mdeberta_v3_base_config())
    try:
        return AutoModel.from_pretrained(config.model, local_files_only=True)
    except (OSError, ValueError) as err:
        raise MissingWeights(
            f"text model {config.model!r} is not available offline (mirkit never downloads). "
            f"Put it on this machine (`huggingface-cli download {config.model}` into the "
            f"Hugging Face cache, or a local directory given as the text model), or use the "
            f"small preset's `config:small`"
        ) from err


class TextEncoder(nn.Module):
    """Token ids [B, L] and attention mask -> token states [B, L, H] and the mask.

    Only items with tokens are run through the transformer; instrumental items get an
    all-masked row and never see an arbitrary token."""

    def __init__(self, config: TextConfig, vocab_size: int | None = None):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        backbone = load_backbone(config, vocab_size)
        if config.gradient_checkpointing:
            backbone.gradient_checkpointing_enable()
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=lora_target_modules(backbone),
        )
        self.model = get_peft_model(backbone, lora)
        if not config.freeze_backbone:  # peft freezes the backbone; opt back in
            for param in self.model.parameters():
                param.requires_grad_(True)
        self.width = backbone.config.hidden_size

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        states = tokens.new_zeros((*tokens.shape, self.width), dtype=torch.float32)
        has_text = mask.any(dim=1)
        if has_text.any():
            out = self.model(input_ids=tokens[has_text], attention_mask=mask[has_text].long())
            states = states.to(out.last_hidden_state.dtype)
            states[has_text] = out.last_hidden_state
        return states, mask
