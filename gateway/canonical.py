"""Canonical tokenization: a prompt becomes segments, each tokenized on its own.

DESIGN.md rule 4: the shareable prefix is tokenized alone and the rest appended, so user text
can never change the tokens of a cached prefix. Here that is done message by message: the chat
template is rendered once per role around a placeholder, the rendered text is split at the
placeholder into a scaffold head and tail (encoded with special tokens allowed), and each
message's content is NFC-normalized and encoded on its own with special tokens NOT allowed (so
"<|user|>" typed by a user is plain text). Turn n's tokens are therefore a prefix of turn n+1's.

A registered variant is the conversation's first (system) message. Its static part — the
content up to the first `{{variable}}` — is the variant segment; the personalized tail, the
conversation and the generation prompt form the private segment. A variant built on a
platform public prefix has that prefix's text first in the system message, tokenized as a
segment of its own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_PLACEHOLDER = "\ue000PREFIXGATE\ue001"
_PROBE_ROLES = ("system", "user", "assistant")


class ChatTokenizer(Protocol):
    """What canonicalization needs from engine.tokenizer.Tokenizer."""

    bos_token_id: int | None
    add_bos: bool

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]: ...

    def render_chat(
        self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool
    ) -> str: ...


class UnsupportedChatTemplate(Exception):
    """The chat template does not render messages independently of one another."""


class PromptError(ValueError):
    """The caller's prompt cannot be canonicalized (e.g. a missing variant variable)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class VariantText:
    """A variant's content split at its first variable: static head and templated tail."""

    static: str
    tail: str
    variables: tuple[str, ...]

    @classmethod
    def parse(cls, content: str) -> VariantText:
        content = nfc(content)
        first = _VARIABLE.search(content)
        cut = first.start() if first else len(content)
        names = tuple(dict.fromkeys(m.group(1) for m in _VARIABLE.finditer(content)))
        return cls(content[:cut], content[cut:], names)

    def fill(self, values: Mapping[str, str]) -> str:
        """The tail with every `{{name}}` replaced; unknown or missing names are errors."""
        extra = sorted(set(values) - set(self.variables))
        if extra:
            raise PromptError(f"unknown prompt variable(s): {', '.join(extra)}", "prompt_variables")
        missing = [n for n in self.variables if n not in values]
        if missing:
            raise PromptError(
                f"missing prompt variable(s): {', '.join(missing)}", "prompt_variables"
            )
        return _VARIABLE.sub(lambda m: nfc(values[m.group(1)]), self.tail)


@dataclass(frozen=True, slots=True)
class Scaffold:
    """Token ids a role's message is wrapped in."""

    head: tuple[int, ...]
    tail: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class VariantTokens:
    """A variant's shareable segments: public prefix (may be empty) and static part."""

    public: tuple[int, ...]
    static: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CanonicalChat:
    """A chat prompt as token ids: public prefix, the variant's static part, the private rest."""

    static: tuple[int, ...]
    private: tuple[int, ...]
    public: tuple[int, ...] = ()


class ChatCanonicalizer:
    """Renders chat prompts message by message; built once per tokenizer."""

    def __init__(self, tokenizer: ChatTokenizer) -> None:
        self._tok = tokenizer
        render = tokenizer.render_chat
        one = render([{"role": "user", "content": _PLACEHOLDER}], add_generation_prompt=False)
        two = render(
            [{"role": "user", "content": _PLACEHOLDER}] * 2, add_generation_prompt=False
        )
        body = two[len(one) :]
        start = one[: len(one) - len(body)]
        if not two.startswith(one) or one != start + body or _PLACEHOLDER not in body:
            raise UnsupportedChatTemplate("the chat template repeats no per-message scaffold")
        with_gen = render([{"role": "user", "content": _PLACEHOLDER}], add_generation_prompt=True)
        if not with_gen.startswith(one):
            raise UnsupportedChatTemplate("the generation prompt is not appended at the end")
        self._start = self._special(start)
        bos = tokenizer.bos_token_id
        if tokenizer.add_bos and bos is not None and self._start[:1] != (bos,):
            self._start = (bos, *self._start)
        self._generation = self._special(with_gen[len(one) :])
        self._scaffolds = {r: self._probe(r, start) for r in _PROBE_ROLES}
        self._self_check(start)

    @property
    def generation_prompt(self) -> tuple[int, ...]:
        """The assistant header that ends every chat prompt."""
        return self._generation

    def _special(self, text: str) -> tuple[int, ...]:
        return tuple(self._tok.encode(text, allow_special=True)) if text else ()

    def _probe(self, role: str, start: str) -> Scaffold:
        text = self._tok.render_chat(
            [{"role": role, "content": _PLACEHOLDER}], add_generation_prompt=False
        )
        if not text.startswith(start) or text.count(_PLACEHOLDER) != 1:
            raise UnsupportedChatTemplate(f"cannot find the scaffold of role {role!r}")
        head, tail = text[len(start) :].split(_PLACEHOLDER)
        return Scaffold(self._special(head), self._special(tail))

    def _self_check(self, start: str) -> None:
        """Message-by-message rendering must equal the template's rendering of a conversation."""
        convo = [{"role": r, "content": f"probe {i}"} for i, r in enumerate(_PROBE_ROLES)]
        convo.append({"role": "user", "content": "probe last"})
        whole = self._tok.render_chat(convo, add_generation_prompt=True)
        pieces = [start]
        for m in convo:
            pieces.append(
                self._tok.render_chat(
                    [{"role": m["role"], "content": m["content"]}], add_generation_prompt=False
                )[len(start) :]
            )
        one = self._tok.render_chat([convo[-1]], add_generation_prompt=False)
        gen = self._tok.render_chat([convo[-1]], add_generation_prompt=True)[len(one) :]
        if "".join(pieces) + gen != whole:
            raise UnsupportedChatTemplate(
                "the chat template renders a message differently by its position"
            )

    def message(self, message: Message) -> list[int]:
        """One message: scaffold head, its NFC content (no special tokens), scaffold tail."""
        scaffold = self._scaffolds.get(message.role)
        if scaffold is None:
            raise PromptError(f"unsupported role {message.role!r}", "messages")
        return [*scaffold.head, *self._tok.encode(nfc(message.content)), *scaffold.tail]

    def variant_static(self, variant: VariantText, public: str | None = None) -> VariantTokens:
        """The shareable segments of a variant.

        Without a public prefix: start, system head and static content form the static part.
        With one: start, system head and the public text form the public part, and the
        static content alone the static part. With no variables the whole system message
        (tail scaffold included) is shareable.
        """
        system = self._scaffolds["system"]
        opening = [*self._start, *system.head]
        static = [*self._tok.encode(variant.static)]
        if not variant.variables:
            static += system.tail
        if public is None:
            return VariantTokens((), (*opening, *static))
        return VariantTokens((*opening, *self._tok.encode(nfc(public))), tuple(static))

    def chat(
        self,
        messages: Sequence[Message],
        variant: VariantText | None = None,
        shared: VariantTokens | None = None,
        values: Mapping[str, str] | None = None,
    ) -> CanonicalChat:
        """Token ids of a chat; `shared` is the cached result of `variant_static`."""
        private: list[int] = []
        if variant is None:
            shared = VariantTokens((), ())
            private += self._start
        else:
            shared = shared if shared is not None else self.variant_static(variant)
            if variant.variables:
                private += self._tok.encode(variant.fill(values or {}))
                private += self._scaffolds["system"].tail
            elif values:
                variant.fill(values)  # raises: the variant takes no variables
        for m in messages:
            private += self.message(m)
        private += self._generation
        return CanonicalChat(shared.static, tuple(private), shared.public)

    def completion(self, prompt: str) -> tuple[int, ...]:
        """A raw completion prompt: BOS (if the model wants one) and the NFC text."""
        bos = self._tok.bos_token_id
        head = (bos,) if self._tok.add_bos and bos is not None else ()
        return (*head, *self._tok.encode(nfc(prompt)))
