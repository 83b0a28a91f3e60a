"""Edge agent fixtures. The real Mosquitto is the module-scoped `broker` of tests/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.edge.support import Subscriber


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscriber]]:
    """`subscribe(port, *filters, **kw)` -> a Subscriber closed after the test."""
    made: list[Subscriber] = []

    def make(port: int, *filters: str, **kw: object) -> Subscriber:
        sub = Subscriber(port, *filters, **kw)  # type: ignore[arg-type]
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


@pytest.fixture
def gateway() -> str:
    """A gateway id no other test uses (retained status and sessions stay apart)."""
    return f"gw-{uuid.uuid4().hex[:8]}"
