"""`Tokenizer`: a checkpoint's tokenizer.json plus the chat template of tokenizer_config.json.

User text must never inject control tokens: `encode` treats "<|user|>" typed by a user as plain
text unless `allow_special=True` (used only for template scaffolding). Two tokenizer instances
hold the two modes, so encoding is safe from several threads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.sandbox
from tokenizers import Tokenizer as HFTokenizer

from engine.checkpoint import CheckpointError

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"


class ChatTemplateError(ValueError):
    """The chat template refused the messages (e.g. roles out of order) or failed to render."""


class Tokenizer:
    def __init__(self, tokenizer_json: str, config: Mapping[str, Any],
                 chat_template: str | None, extra_eos_ids: Sequence[int] = ()) -> None:
        self._plain = HFTokenizer.from_str(tokenizer_json)
        self._plain.encode_special_tokens = True
        self._special = HFTokenizer.from_str(tokenizer_json)
        self.vocab_size: int = self._plain.get_vocab_size(with_added_tokens=True)
        self.bos_token: str | None = _token_text(config.get("bos_token"))
        self.eos_token: str | None = _token_text(config.get("eos_token"))
        self.bos_token_id: int | None = self._id(self.bos_token)
        eos = [self._id(self.eos_token), *extra_eos_ids]
        self.eos_token_ids: tuple[int, ...] = tuple(dict.fromkeys(i for i in eos if i is not None))
        self.add_bos: bool = self._adds_bos(config)
        self.chat_template: str | None = chat_template
        self._template = _compile(chat_template) if chat_template else None

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        root = Path(path)
        file = root / TOKENIZER_FILE
        if not file.is_file():
            raise CheckpointError(f"{file}: missing (the engine needs a fast tokenizer.json)")
        try:
            text = file.read_text(encoding="utf-8")
            HFTokenizer.from_str(text)
        except Exception as exc:  # tokenizers raises untyped errors on a bad file
            raise CheckpointError(f"{file}: not a valid tokenizer.json ({exc})") from exc
        config = _read_json(root / CONFIG_FILE) or {}
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: take the default one
            named = {t.get("name"): t.get("template") for t in template}
            template = named.get("default") or next(iter(named.values()), None)
        template_file = root / TEMPLATE_FILE
        if template_file.is_file():
            template = template_file.read_text(encoding="utf-8")
        generation = _read_json(root / "generation_config.json") or {}
        model = _read_json(root / "config.json") or {}
        extra = [*_ids(generation.get("eos_token_id")), *_ids(model.get("eos_token_id"))]
        return cls(text, config, template, extra)

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Token ids of `text`; never adds BOS/EOS."""
        tok = self._special if allow_special else self._plain
        return tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self._plain.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._plain.token_to_id(token)

    def render_chat(self, messages: Sequence[Mapping[str, str]], *,
                    add_generation_prompt: bool) -> str:
        """The chat template rendered as text (encode it with `allow_special=True`)."""
        if self._template is None:
            raise ChatTemplateError("this tokenizer has no chat template")
        try:
            return self._template.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
            )
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"chat template: {exc}") from exc

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._plain.token_to_id(token)

    def _adds_bos(self, config: Mapping[str, Any]) -> bool:
        """tokenizer_config's add_bos_token, else whether tokenizer.json's post-processor adds
        BOS (Llama 3 style)."""
        if "add_bos_token" in config:
            return bool(config["add_bos_token"]) and self.bos_token_id is not None
        if self.bos_token_id is None:
            return False
        probe = self._special.encode("a", add_special_tokens=True).ids
        return probe[:1] == [self.bos_token_id]


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # {"content": "<s>", ...} (AddedToken serialization)
        value = value.get("content")
    return value if isinstance(value, str) else None


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


def _read_json(file: Path) -> dict[str, Any] | None:
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc})") from exc


def _raise(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _compile(template: str) -> jinja2.Template:
    """Sandboxed, with the environment options and helpers Hugging Face chat templates use."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)
