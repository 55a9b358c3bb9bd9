"""Trains the tiny model's byte-level BPE tokenizer offline, on Python standard-library sources.

Byte-level BPE covers every byte, so any UTF-8 text round-trips. The chat template wraps each
message in role markers; every turn ends with <|end|>, which is also an end-of-sequence token.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
END = "<|end|>"
SPECIAL_TOKENS = (BOS, EOS, "<|system|>", "<|user|>", "<|assistant|>", END)
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
# Standard-library modules whose source (code and docstrings) is the training text.
_CORPUS_MODULES = ("json", "textwrap", "string", "argparse", "collections", "dataclasses",
                   "functools", "pathlib", "difflib", "calendar", "email.message", "http.client")
_CHAT_TEXT = (
    "You are a helpful assistant. Answer the question briefly and politely.\n"
    "Hello! How can I help you today? Please summarize the following document.\n"
    "The user asked about the weather; the assistant replied that it is sunny.\n"
)


@dataclass(frozen=True, slots=True)
class TinyVocab:
    size: int
    bos_token_id: int
    eos_token_ids: tuple[int, ...]


def _corpus() -> list[str]:
    import importlib

    texts = [inspect.getsource(importlib.import_module(name)) for name in _CORPUS_MODULES]
    return [*texts, _CHAT_TEXT * 20]


@lru_cache(maxsize=4)
def train_tokenizer_json(vocab_size: int = 3072) -> str:
    """tokenizer.json text of a byte-level BPE with the chat special tokens (deterministic)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    return tok.to_str()


def write_tokenizer(path: Path, vocab_size: int = 3072, model_max_length: int = 4096
                    ) -> TinyVocab:
    """Write tokenizer.json, tokenizer_config.json and generation_config.json."""
    text = train_tokenizer_json(vocab_size)
    (path / "tokenizer.json").write_text(text, encoding="utf-8")
    tok = Tokenizer.from_str(text)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": model_max_length,
        "chat_template": CHAT_TEMPLATE,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    vocab = TinyVocab(size=tok.get_vocab_size(with_added_tokens=True),
                      bos_token_id=tok.token_to_id(BOS),
                      eos_token_ids=(tok.token_to_id(EOS), tok.token_to_id(END)))
    generation = {"bos_token_id": vocab.bos_token_id, "eos_token_id": list(vocab.eos_token_ids)}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2),
                                                 encoding="utf-8")
    return vocab
