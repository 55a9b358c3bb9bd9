"""A small chat tokenizer for canonicalization tests: byte-level BPE trained here, offline.

It mirrors engine.tokenizer.Tokenizer's interface (encode with/without special tokens,
render_chat with a jinja2 template), which is all gateway/canonical.py needs.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import jinja2
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from engine.async_engine import AsyncEngine
from engine.engine_config import EngineConfig
from tests.gateway.observability_support import tiny_model

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|system|>", "<|user|>", "<|assistant|>",
            "<|end|>"]
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


class ChatTokenizerDouble:
    def __init__(self, tok: Tokenizer, template: str, add_bos: bool) -> None:
        self._tok = tok
        self._template = jinja2.Environment(keep_trailing_newline=True).from_string(template)
        self.bos_token_id = tok.token_to_id("<|begin_of_text|>")
        self.add_bos = add_bos

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        self._tok.encode_special_tokens = not allow_special
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def render_chat(
        self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool
    ) -> str:
        bos = "" if self.add_bos else "<|begin_of_text|>"
        return self._template.render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos
        )

    def special_ids(self) -> set[int]:
        return {self._tok.token_to_id(s) for s in SPECIALS}


def _train() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [textwrap.dedent(inspect.getsource(m)) for m in (json, textwrap, inspect)]
    corpus += ["You are a helpful assistant. Talk like a pirate. Hello world, hello there."] * 50
    trainer = trainers.BpeTrainer(
        vocab_size=1500,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return tok


@pytest.fixture(scope="session")
def bpe() -> Tokenizer:
    return _train()


@pytest.fixture(scope="session")
def chat_tokenizer(bpe: Tokenizer) -> ChatTokenizerDouble:
    return ChatTokenizerDouble(bpe, TEMPLATE, add_bos=True)


# --- a real engine on the tiny model, for the observability tests ------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory)


@pytest.fixture
async def engine(model_dir: Path) -> AsyncIterator[AsyncEngine]:
    eng = AsyncEngine.load(
        EngineConfig(model_dir=str(model_dir), device="cpu", num_blocks=64, progress=False)
    )
    await eng.start()
    yield eng
    await eng.stop()
