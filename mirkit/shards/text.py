"""Lyrics tokenizers: a Hugging Face tokenizer from a local path or the local hub cache,
or one fitted on the corpus's lyrics (`train:VOCAB`). Either way it is saved in Hugging
Face format under `shards/tokenizer/`, so shards describe themselves and any later
process loads exactly the tokenizer that produced `tokens.npy`."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

import numpy as np

from mirkit.errors import MirkitError

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
DEFAULT_TOKENIZER = "microsoft/mdeberta-v3-base"


class TokenizerUnavailable(MirkitError, RuntimeError):
    """The named tokenizer is not on this machine; the message gives both fixes."""


def _fix_message(spec: str) -> str:
    return (
        f"tokenizer {spec!r} is not available offline (mirkit never downloads). Either put it "
        f"on this machine - `huggingface-cli download {spec}` into the Hugging Face cache, or "
        f"a local directory passed as --tokenizer PATH - or fit one on your lyrics with "
        f"--tokenizer train:8000"
    )


def load_tokenizer(spec: str):
    """A tokenizer from a local directory or a hub name already in the local cache."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(spec, local_files_only=True)
    except (OSError, ValueError) as err:
        raise TokenizerUnavailable(_fix_message(spec)) from err


@cache
def saved_tokenizer(directory: str):
    """A tokenizer saved in Hugging Face format, loaded once per process (workers call
    this for every sample)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, local_files_only=True)


def train_tokenizer(texts: list[str], vocab_size: int):
    """A BPE tokenizer fitted on `texts` (NFKC, whitespace-aware Metaspace pieces for any
    script), wrapped as a Hugging Face fast tokenizer with [CLS] text [SEP]."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="[UNK]"))
    core.normalizer = normalizers.NFKC()
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.Metaspace()
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    core.train_from_iterator(texts, trainer=trainer)
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(s, core.token_to_id(s)) for s in SPECIALS[2:4]]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def prepare_tokenizer(spec: str, lyrics: list[str], out_dir: Path):
    """Load or fit the tokenizer `spec` names and save it to `out_dir` (HF format)."""
    if spec.startswith("train:"):
        try:
            vocab_size = int(spec.split(":", 1)[1])
        except ValueError as err:
            raise TokenizerUnavailable(
                f"--tokenizer {spec!r}: expected train:VOCAB_SIZE, e.g. train:8000"
            ) from err
        tokenizer = train_tokenizer(lyrics, vocab_size)
    else:
        tokenizer = load_tokenizer(spec)
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def vocab_sha256(tokenizer) -> str:
    vocab = json.dumps(tokenizer.get_vocab(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(vocab.encode("utf-8")).hexdigest()


def token_ids(tokenizer, text: str, max_tokens: int) -> np.ndarray:
    ids = tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]
    return np.asarray(ids, dtype=np.int32)
