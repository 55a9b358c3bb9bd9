"""Pieces shared by the chat and completions shapes: usage, stream options, stop."""

from __future__ import annotations

import msgspec


class StreamOptions(msgspec.Struct, forbid_unknown_fields=True):
    include_usage: bool = False


class PromptTokensDetails(msgspec.Struct):
    """`public_cached_tokens` (an extension OpenAI clients ignore) is the part of
    `cached_tokens` reused from a platform public prefix; the rest is the tenant's own."""

    cached_tokens: int
    public_cached_tokens: int = 0


class Usage(msgspec.Struct):
    """Token counts of a request; `cached_tokens` are the prompt tokens reused from the cache.

    Extensions (as Anthropic names them): `cache_read_input_tokens` equals `cached_tokens`;
    `cache_creation_input_tokens` are the prompt tokens newly written to the prefix cache.
    """

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    @classmethod
    def of(
        cls, prompt_tokens: int, cached_tokens: int, completion_tokens: int,
        cache_write_tokens: int = 0, public_cached_tokens: int = 0,
    ) -> Usage:
        return cls(
            prompt_tokens,
            completion_tokens,
            prompt_tokens + completion_tokens,
            PromptTokensDetails(cached_tokens, public_cached_tokens),
            cached_tokens,
            cache_write_tokens,
        )


class ModelCard(msgspec.Struct):
    id: str
    created: int
    object: str = "model"
    owned_by: str = "prefixgate"


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"


def stop_list(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)
