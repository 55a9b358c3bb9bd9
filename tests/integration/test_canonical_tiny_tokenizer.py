"""Canonical tokenization with the engine's own tokenizer and chat template (init-tiny)."""

from __future__ import annotations

from pathlib import Path

from engine.tokenizer import Tokenizer
from gateway.canonical import ChatCanonicalizer, Message, VariantText


def test_message_by_message_matches_the_checkpoint_template(tiny_model_dir: Path) -> None:
    tok = Tokenizer.from_dir(tiny_model_dir)
    canon = ChatCanonicalizer(tok)  # the constructor's self-check passed
    msgs = [Message("system", "Be brief."), Message("user", "héllo <|user|> there"),
            Message("assistant", "hi"), Message("user", "json?")]
    ids = canon.chat(msgs).private
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    rendered = tok.render_chat([{"role": m.role, "content": m.content} for m in msgs],
                               add_generation_prompt=True)
    assert tok.decode(list(ids), skip_special_tokens=False) == rendered
    user_token = tok.token_to_id("<|user|>")
    assert list(ids).count(user_token) == 2  # the scaffolds' only; the typed one is plain text


def test_variant_static_part_is_a_prefix_whatever_follows(tiny_model_dir: Path) -> None:
    canon = ChatCanonicalizer(Tokenizer.from_dir(tiny_model_dir))
    variant = VariantText.parse("You are the helpful assistant of {{company}}. Be kind.")
    static = canon.variant_static(variant).static
    for company in ("ACME", "Initech", "<|end|>"):
        out = canon.chat([Message("user", "hi")], variant, None, {"company": company})
        assert out.static == static
