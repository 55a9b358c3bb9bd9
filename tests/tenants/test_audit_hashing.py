"""The fast canonical JSON used for record hashes is byte-identical to the json module's."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tenants.audit import canonical_json

_TEXT = st.text(max_size=12) | st.text(alphabet="abcdef0123456789_-", max_size=12)
_VALUE = st.none() | st.integers(min_value=0, max_value=2**40) | _TEXT | st.lists(_TEXT,
                                                                                   max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
                       _VALUE, max_size=8))
def test_canonical_json_matches_json_dumps(body: dict[str, Any]) -> None:
    expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert canonical_json(body) == expected.encode("ascii")


def test_every_single_character_encodes_the_same() -> None:
    for code in [*range(0x100), 0x2028, 0x1F600]:
        body = {"a": chr(code) + "x", "b": [chr(code)]}
        expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert canonical_json(body) == expected.encode("ascii"), hex(code)
