"""`IncrementalDetokenizer`: token ids in, newly complete text out, one token at a time.

Byte-level BPE splits multi-byte characters across tokens; decoding such a token alone gives
U+FFFD. Text is therefore released only once it no longer ends in a partial character. Each
push decodes a short window (the tokens since the last release plus the ones before them) so
tokenizers that strip a leading space at the start of a decode see the same context.
"""

from __future__ import annotations

from typing import Protocol


class _Decoder(Protocol):
    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str: ...


class IncrementalDetokenizer:
    def __init__(self, tokenizer: _Decoder, *, skip_special_tokens: bool = True) -> None:
        self._tok = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = []
        self._prefix = 0  # start of the decode window
        self._read = 0  # tokens up to here have been released as text

    def push(self, token_id: int) -> str:
        """Append one token; returns the text it completes ("" while a character is pending)."""
        self._ids.append(token_id)
        window = self._ids[self._prefix :]
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        text = self._decode(window)
        if text.endswith("\ufffd") or len(text) <= len(prefix_text):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(prefix_text) :]

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=self._skip) if ids else ""
