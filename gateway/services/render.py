"""OpenAI response bodies and stream chunks for chat and text completions, as JSON bytes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from gateway.schemas.openai_chat import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatMessageOut,
)
from gateway.schemas.openai_common import Usage
from gateway.schemas.openai_completions import Completion, CompletionChoice
from gateway.services.jobs import ChoiceOutput, Job

_encode = msgspec.json.Encoder().encode


def usage_of(job: Job, outputs: list[ChoiceOutput]) -> Usage:
    """Prompt tokens count once per prompt (as OpenAI does for n > 1); its cached tokens are
    those of the prompt's first choice; completion tokens add up over all choices, and so do
    the tokens written to the cache (whole blocks: a finished choice also caches its output).
    Public cached tokens (a platform prefix's blocks) are counted like cached tokens."""
    prompt = cached = public = completion = written = 0
    for out in outputs:
        result = out.result
        if result is None:
            continue
        completion += result.completion_tokens
        written += result.cache.inserted_blocks * job.block_size
        if out.index % job.n == 0:
            prompt += result.prompt_tokens
            cached += result.cached_tokens
            public += out.public_cached_tokens
    return Usage.of(prompt, cached, completion, written, public)


class Renderer(Protocol):
    def full(self, job: Job, outputs: list[ChoiceOutput], usage: Usage) -> bytes: ...

    def opening(self, job: Job, index: int) -> bytes | None: ...

    def delta(self, job: Job, index: int, text: str) -> bytes: ...

    def finish(self, job: Job, index: int, reason: str) -> bytes: ...

    def usage(self, job: Job, usage: Usage) -> bytes: ...


@dataclass(slots=True)
class ChatRenderer:
    created: int = field(default_factory=lambda: int(time.time()))

    def full(self, job: Job, outputs: list[ChoiceOutput], usage: Usage) -> bytes:
        choices = [
            ChatChoice(o.index, ChatMessageOut("assistant", o.text), o.finish_reason or "stop")
            for o in outputs
        ]
        return _encode(ChatCompletion(job.request_id, self.created, job.model, choices, usage))

    def _chunk(self, job: Job, choices: list[ChatChunkChoice], usage: Usage | None) -> bytes:
        return _encode(ChatCompletionChunk(job.request_id, self.created, job.model, choices, usage))

    def opening(self, job: Job, index: int) -> bytes | None:
        return self._chunk(job, [ChatChunkChoice(index, ChatDelta("assistant", ""))], None)

    def delta(self, job: Job, index: int, text: str) -> bytes:
        return self._chunk(job, [ChatChunkChoice(index, ChatDelta(content=text))], None)

    def finish(self, job: Job, index: int, reason: str) -> bytes:
        return self._chunk(job, [ChatChunkChoice(index, ChatDelta(), reason)], None)

    def usage(self, job: Job, usage: Usage) -> bytes:
        return self._chunk(job, [], usage)


@dataclass(slots=True)
class CompletionRenderer:
    created: int = field(default_factory=lambda: int(time.time()))

    def full(self, job: Job, outputs: list[ChoiceOutput], usage: Usage) -> bytes:
        choices = [CompletionChoice(o.text, o.index, o.finish_reason or "stop") for o in outputs]
        return _encode(Completion(job.request_id, self.created, job.model, choices, usage))

    def _chunk(self, job: Job, choices: list[CompletionChoice], usage: Usage | None) -> bytes:
        return _encode(Completion(job.request_id, self.created, job.model, choices, usage))

    def opening(self, job: Job, index: int) -> bytes | None:
        return None

    def delta(self, job: Job, index: int, text: str) -> bytes:
        return self._chunk(job, [CompletionChoice(text, index, None)], None)

    def finish(self, job: Job, index: int, reason: str) -> bytes:
        return self._chunk(job, [CompletionChoice("", index, reason)], None)

    def usage(self, job: Job, usage: Usage) -> bytes:
        return self._chunk(job, [], usage)
