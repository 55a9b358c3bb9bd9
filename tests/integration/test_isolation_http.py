"""Isolation over HTTP: byte-identical prompts of two tenants never share cached blocks."""

from __future__ import annotations

from tests.integration.conftest import Gateway
from tests.integration.test_openai_api import SYSTEM

QUESTION = [{"role": "user", "content": "Same question."}]


def _cached(gw: Gateway, key: str, messages: list[dict[str, str]] = QUESTION,
            **extra: object) -> int:
    reply = gw.client(key).chat.completions.create(
        model=gw.model, messages=messages, max_tokens=1, **extra
    )
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    return reply.usage.prompt_tokens_details.cached_tokens


def test_identical_variants_of_two_tenants_get_no_cache_from_each_other(gateway: Gateway) -> None:
    keys = []
    for name in ("iso-a", "iso-b"):
        tid, key = gateway.tenant(name)
        gateway.admin.post(f"/admin/tenants/{tid}/prompts",
                           json={"name": "same", "content": SYSTEM})
        keys.append(key)
    variant = {"extra_body": {"prompt_variant": {"name": "same"}}}
    assert _cached(gateway, keys[0], **variant) == 0
    assert _cached(gateway, keys[0], **variant) > 0
    assert _cached(gateway, keys[1], **variant) == 0


def test_identical_ad_hoc_prompts_of_two_tenants(gateway: Gateway) -> None:
    _, a = gateway.tenant("adhoc-a")
    _, b = gateway.tenant("adhoc-b")
    messages = [{"role": "system", "content": SYSTEM}, *QUESTION]
    assert _cached(gateway, a, messages) == 0
    assert _cached(gateway, a, messages) > 0
    assert _cached(gateway, b, messages) == 0


def test_user_policy_keeps_end_users_apart(gateway: Gateway) -> None:
    tid, key = gateway.tenant("peruser", cache_policy="user")
    gateway.admin.post(f"/admin/tenants/{tid}/prompts", json={"name": "p", "content": SYSTEM})
    v = {"prompt_variant": {"name": "p"}}
    assert _cached(gateway, key, user="alice", extra_body=v) == 0
    assert _cached(gateway, key, user="alice", extra_body=v) > 0
    assert _cached(gateway, key, user="bob", extra_body=v) == 0
    assert _cached(gateway, key, extra_body=v) == 0  # no user: not cached at all
    assert _cached(gateway, key, extra_body=v) == 0


def test_off_policy_caches_nothing(gateway: Gateway) -> None:
    tid, key = gateway.tenant("nocache", cache_policy="off")
    gateway.admin.post(f"/admin/tenants/{tid}/prompts", json={"name": "p", "content": SYSTEM})
    v = {"prompt_variant": {"name": "p"}}
    assert [_cached(gateway, key, extra_body=v) for _ in range(2)] == [0, 0]
    view = gateway.admin.get("/admin/cache").json()["data"]
    assert not [e for e in view if e["tenant_id"] == tid]


def test_anonymous_personalization_is_reused_only_with_the_same_values(gateway: Gateway) -> None:
    tid, key = gateway.tenant("persona-anon")
    content = SYSTEM + "The customer is {{name}} and their plan is very important to us. " * 3
    gateway.admin.post(f"/admin/tenants/{tid}/prompts", json={"name": "p", "content": content})

    def ask(name: str) -> int:
        return _cached(gateway, key, extra_body={"prompt_variant": {"name": "p"},
                                                 "prompt_variables": {"name": name}})

    ask("Ann")
    static_only = ask("Bob")  # shares the static part, not Ann's personalized tail
    assert static_only > 0
    assert ask("Ann") > static_only  # Ann's own personalized blocks are reused by Ann only
