"""The tenant API over real HTTP with the official openai client."""

from __future__ import annotations

import httpx

from tests.integration.conftest import Gateway

SYSTEM = "You are a helpful assistant for the ACME support desk. Answer briefly and kindly. " * 4


def test_models_lists_the_served_model(gateway: Gateway) -> None:
    _, key = gateway.tenant("models-t")
    models = gateway.client(key).models.list()
    assert [m.id for m in models.data] == [gateway.model]


def test_chat_non_streaming(gateway: Gateway) -> None:
    _, key = gateway.tenant("chat-t")
    raw = gateway.client(key).chat.completions.with_raw_response.create(
        model=gateway.model, messages=[{"role": "user", "content": "Hello!"}], max_tokens=4,
        temperature=0, seed=1,
    )
    assert raw.headers["x-request-id"].startswith("req_")
    reply = raw.parse()
    assert reply.id == raw.headers["x-request-id"]
    assert reply.object == "chat.completion" and len(reply.choices) == 1
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens > 0
    assert 1 <= usage.completion_tokens <= 4
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_chat_streaming_with_usage(gateway: Gateway) -> None:
    _, key = gateway.tenant("stream-t")
    stream = gateway.client(key).chat.completions.create(
        model=gateway.model, messages=[{"role": "user", "content": "Stream, please."}],
        max_tokens=5, temperature=0, stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert 1 <= usage.completion_tokens <= 5
    # Same request without streaming, greedy: same text.
    again = gateway.client(key).chat.completions.create(
        model=gateway.model, messages=[{"role": "user", "content": "Stream, please."}],
        max_tokens=5, temperature=0,
    )
    assert again.choices[0].message.content == text


def test_sse_wire_format_ends_with_done(gateway: Gateway) -> None:
    _, key = gateway.tenant("sse-t")
    body = {"model": gateway.model, "prompt": "def main(", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", gateway.base_url + "/v1/completions", json=body,
                      headers={"authorization": f"Bearer {key}"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_completions_streaming_and_not(gateway: Gateway) -> None:
    _, key = gateway.tenant("compl-t")
    client = gateway.client(key)
    reply = client.completions.create(
        model=gateway.model, prompt="import os\n", max_tokens=4, temperature=0
    )
    assert reply.object == "text_completion" and reply.usage is not None
    assert reply.usage.completion_tokens >= 1
    chunks = list(client.completions.create(
        model=gateway.model, prompt="import os\n", max_tokens=4, temperature=0, stream=True
    ))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == reply.choices[0].text


def test_n_choices_and_stop(gateway: Gateway) -> None:
    _, key = gateway.tenant("n-t")
    reply = gateway.client(key).chat.completions.create(
        model=gateway.model, messages=[{"role": "user", "content": "Pick."}], max_tokens=3,
        n=3, seed=7, stop=["\n\n"],
    )
    assert sorted(c.index for c in reply.choices) == [0, 1, 2]
    assert reply.usage is not None and reply.usage.completion_tokens >= 3


def test_second_call_with_the_same_variant_reports_cached_tokens(gateway: Gateway) -> None:
    tid, key = gateway.tenant("cache-t")
    r = gateway.admin.post(f"/admin/tenants/{tid}/prompts",
                           json={"name": "support", "content": SYSTEM})
    assert r.status_code == 201 and r.json()["version"] == 1
    client = gateway.client(key)

    def ask(question: str) -> int:
        reply = client.chat.completions.create(
            model=gateway.model, messages=[{"role": "user", "content": question}], max_tokens=2,
            extra_body={"prompt_variant": {"name": "support"}},
        )
        assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
        return reply.usage.prompt_tokens_details.cached_tokens

    assert ask("Where is my order?") == 0
    cached = ask("Can I get a refund?")
    assert cached >= 48 and cached % 16 == 0  # the variant's full blocks


def test_personalized_variant(gateway: Gateway) -> None:
    tid, key = gateway.tenant("persona-t")
    gateway.admin.post(f"/admin/tenants/{tid}/prompts",
                       json={"name": "greeter", "content": SYSTEM + "The user is {{name}}."})
    client = gateway.client(key)
    for name in ("Ann", "Bob"):
        reply = client.chat.completions.create(
            model=gateway.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
            user=f"user-{name}",
            extra_body={"prompt_variant": {"name": "greeter", "version": 1},
                        "prompt_variables": {"name": name}},
        )
        assert reply.usage is not None
    # Bob's request reused the shared static part computed for Ann, not Ann's private part.
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens >= 48


def test_openapi_schema_is_served(gateway: Gateway) -> None:
    paths = httpx.get(gateway.base_url + "/schema/openapi.json").json()["paths"]
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/models", "/admin/tenants",
                 "/admin/tenants/{tenant_id}/keys", "/admin/tenants/{tenant_id}/prompts",
                 "/admin/cache", "/admin/audit"):
        assert path in paths


def test_streaming_n_choices(gateway: Gateway) -> None:
    _, key = gateway.tenant("stream-n-t")
    chunks = list(gateway.client(key).chat.completions.create(
        model=gateway.model, messages=[{"role": "user", "content": "Two, please."}],
        max_tokens=3, n=2, seed=3, stream=True, stream_options={"include_usage": True},
    ))
    finished = {c.choices[0].index: c.choices[0].finish_reason for c in chunks
                if c.choices and c.choices[0].finish_reason}
    assert set(finished) == {0, 1}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 2
