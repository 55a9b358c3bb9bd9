"""OpenAI (legacy) text completion shapes. `prompt` is a string or a list of strings."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gateway.schemas.openai_chat import N, Seed, Stop, Temperature, TopP, ZeroPenalty
from gateway.schemas.openai_common import StreamOptions, Usage

CompletionMaxTokens = Annotated[int, msgspec.Meta(ge=1)]


class CompletionRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    prompt: str | Annotated[list[str], msgspec.Meta(min_length=1)]
    max_tokens: CompletionMaxTokens = 16
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: Seed | None = None
    stop: Stop | None = None
    n: N = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    echo: Literal[False] = False
    logprobs: None = None
    frequency_penalty: ZeroPenalty | None = None
    presence_penalty: ZeroPenalty | None = None

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class CompletionChoice(msgspec.Struct):
    text: str
    index: int
    finish_reason: str | None
    logprobs: None = None


class Completion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    object: str = "text_completion"
