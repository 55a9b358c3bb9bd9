"""OpenAI chat completion shapes, plus prefixgate's `prompt_variant`/`prompt_variables`.

Unknown fields are refused (400) rather than silently ignored, as are OpenAI features the
engine does not implement (tools, logprobs, penalties): a client never gets a different
answer than it asked for without being told.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gateway.schemas.openai_common import StreamOptions, Usage

MaxTokens = Annotated[int, msgspec.Meta(ge=1)]
Temperature = Annotated[float, msgspec.Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
N = Annotated[int, msgspec.Meta(ge=1, le=128)]
Stop = str | Annotated[list[str], msgspec.Meta(max_length=4)]
ZeroPenalty = Annotated[float, msgspec.Meta(ge=0.0, le=0.0)]
Seed = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]  # what torch's generator takes


class TextPart(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["text"]
    text: str


class ChatMessageIn(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class PromptVariantRef(msgspec.Struct, forbid_unknown_fields=True):
    """Selects a registered system prompt; `version` None = the newest non-retired one."""

    name: str
    version: int | None = None


class ChatCompletionRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    messages: list[ChatMessageIn]
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: Seed | None = None
    stop: Stop | None = None
    n: N = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    prompt_variant: PromptVariantRef | None = None
    prompt_variables: dict[str, str] | None = None
    frequency_penalty: ZeroPenalty | None = None
    presence_penalty: ZeroPenalty | None = None
    logprobs: Literal[False] | None = None


class ChatMessageOut(msgspec.Struct):
    role: str
    content: str


class ChatChoice(msgspec.Struct):
    index: int
    message: ChatMessageOut
    finish_reason: str
    logprobs: None = None


class ChatCompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    object: str = "chat.completion"


class ChatDelta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None


class ChatChunkChoice(msgspec.Struct):
    index: int
    delta: ChatDelta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    object: str = "chat.completion.chunk"
