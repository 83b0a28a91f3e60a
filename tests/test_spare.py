"""Spares hands an array out again only when nothing refers to it any more."""

from __future__ import annotations

import numpy as np

from sensing.ingest.received import Incoming, Received
from sensing.spare import Spares


def test_an_array_is_reused_only_once_every_reference_is_gone() -> None:
    spares = Spares(np.uint8)
    a, b = spares.empty(100), spares.empty(100)
    first = id(a.base)
    assert a.base is not b.base
    c = spares.empty(50)  # both kept ones taken: a new one, not kept
    assert id(c.base) != first and c.base is not b.base
    del a
    d = spares.empty(100)
    assert id(d.base) == first
    view = d.data  # a memoryview
    del d
    assert id(spares.empty(10).base) != first  # the memoryview holds it
    del view
    e = spares.empty(10)
    assert id(e.base) == first
    part = e[2:5]
    del e
    assert id(spares.empty(10).base) != first  # a view of a view holds it too
    del part
    assert spares.empty(500).shape == (500,)  # larger than any: a new one in place of one


def test_joined_parts_stay_as_they_were_while_later_ones_are_joined() -> None:
    def parts(k: int) -> list[Received]:
        return [Received.from_messages([Incoming(f"t/{k}/{i}", bytes([k, i]) * 300_000, i, 1, 0)])
                for i in range(3)]

    held = [Received.concat(parts(k)) for k in range(4)]
    for k, joined in enumerate(held):
        assert [m.payload for m in joined.messages()] == [bytes([k, i]) * 300_000
                                                          for i in range(3)]
