"""The gateway's namespace -> owner index (cache view labels, tenant deletion)."""

from __future__ import annotations

from gateway.services.namespace_index import NamespaceIndex, NamespaceLabel


def test_record_label_and_forget_tenant() -> None:
    index = NamespaceIndex()
    a1, a2, b1 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    index.record_all([(a1, NamespaceLabel("ten_a", "faq@1", "shared")),
                      (None, NamespaceLabel("ten_a", None, "shared")),
                      (a2, NamespaceLabel("ten_a", "faq@1", "user")),
                      (b1, NamespaceLabel("ten_b", None, "shared"))])
    index.record(a1, NamespaceLabel("ten_a", "other@9", "shared"))  # first label wins
    assert index.label(a1) == NamespaceLabel("ten_a", "faq@1", "shared")
    assert index.of_tenant("ten_a") == {a1, a2}
    assert index.forget_tenant("ten_a") == {a1, a2}
    assert index.label(a1) is None and index.of_tenant("ten_a") == frozenset()
    assert index.label(b1) is not None
