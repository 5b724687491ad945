"""The byte-level tokenizer of rftkit's tiny models.

Ids 0-255 are the bytes themselves, so any UTF-8 text round-trips exactly and no training
is needed; the special tokens follow. Bytes are spelled with the GPT-2 byte-to-unicode
alphabet inside the `tokenizers` model, which is what lets a plain BPE with no merges and
a ByteLevel pre-tokenizer / decoder act as an exact byte codec.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from rftkit.data.chat import TINY_CHAT_TEMPLATE

PAD, BOS, END = "<|pad|>", "<|bos|>", "<|end|>"
ROLE_TOKENS = ["<|system|>", "<|developer|>", "<|user|>", "<|assistant|>", "<|tool|>"]
SPECIAL_TOKENS = [PAD, BOS, END, *ROLE_TOKENS]


def byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (Radford et al., 2019).

    Printable Latin-1 bytes stand for themselves; the rest are shifted past U+00FF.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    shifted = iter(range(256, 512))
    return {b: chr(b) if b in printable else chr(next(shifted)) for b in range(256)}


def build_byte_tokenizer(model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """A transformers fast tokenizer over the 256 bytes plus rftkit's special tokens."""
    alphabet = byte_alphabet()
    backend = Tokenizer(models.BPE(vocab={alphabet[b]: b for b in range(256)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=END,
        pad_token=PAD,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer
