"""Silences: what they match, their bounds, and their record in SQLite."""

from __future__ import annotations

import sqlite3

import pytest
from pydantic import ValidationError

from sensing.dispatch.incidents import incident_key
from sensing.dispatch.silences import MAX_SILENCE_MS, Silence, SilenceBook

T = 1_800_000_000_000
LINE = ("c-01", "s-01", "d-01", "city")


def _silence(**kw: object) -> Silence:
    base: dict[str, object] = dict(author="duty-1", reason="maintenance", starts_ms=T,
                                   ends_ms=T + 3_600_000)
    base.update(kw)
    return Silence(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "alert_type", "device", "line", "held"), [
    ({"device": "smoke-1"}, "smoke.fire", "smoke-1", LINE, True),
    ({"device": "smoke-1"}, "smoke.fire", "smoke-2", LINE, False),
    ({"area": "s-01"}, "manhole.gas", "mh-9", LINE, True),          # an ancestor's subtree
    ({"area": "s-02"}, "manhole.gas", "mh-9", LINE, False),
    ({"type": "smoke.*"}, "smoke.co", "smoke-3", LINE, True),
    ({"type": "smoke.*"}, "smokey.co", "x", LINE, False),
    ({"type": "device.battery", "area": "c-01"}, "device.battery", "x", LINE, True),
    ({"type": "device.battery", "area": "c-01"}, "device.fault", "x", LINE, False),
])
def test_what_a_silence_matches(kw: dict[str, object], alert_type: str, device: str,
                                line: tuple[str, ...], held: bool) -> None:
    assert _silence(**kw).matches(alert_type, device, line, T + 1) is held


def test_a_silence_holds_only_between_its_start_and_end() -> None:
    s = _silence(device="smoke-1")
    assert not s.matches("smoke.fire", "smoke-1", LINE, T - 1)
    assert s.matches("smoke.fire", "smoke-1", LINE, T)
    assert not s.matches("smoke.fire", "smoke-1", LINE, T + 3_600_000)


@pytest.mark.parametrize("kw", [
    {},                                                      # matches everything: refused
    {"device": "d", "ends_ms": T},                           # ends when it starts
    {"device": "d", "ends_ms": T + MAX_SILENCE_MS + 1},      # longer than 90 days
    {"device": "d", "author": ""},
    {"device": "d", "reason": "x" * 501},
    {"device": "d", "type": "smoke fire; drop table"},
])
def test_unbounded_or_anonymous_silences_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _silence(**kw)


def test_book_keeps_history_and_reloads_what_is_in_force() -> None:
    db = sqlite3.connect(":memory:")
    book = SilenceBook(db)
    short = book.add(_silence(device="smoke-1", ends_ms=T + 60_000), T)
    long = book.add(_silence(area="c-01"), T)
    assert book.holding("smoke.fire", "smoke-1", LINE, T + 1) in (short, long)
    assert book.next_end("smoke.fire", "smoke-1", LINE, T + 1) == T + 3_600_000
    book.expire(T + 60_000)
    assert book.active == (long,)
    assert SilenceBook(db).active == (long,)                 # a restart keeps it
    assert book.remove(long.silence_id, "duty-2") and not book.remove(long.silence_id, "x")
    assert book.holding("smoke.fire", "smoke-1", LINE, T + 2) is None
    rows = dict(db.execute("SELECT silence_id, removed_by FROM silences"))
    assert rows == {short.silence_id: "(expired)", long.silence_id: "duty-2"}


def test_incident_keys_group_what_belongs_together() -> None:
    assert incident_key("smoke.fire", "gw-1") == incident_key("smoke.fire", "gw-1")
    assert incident_key("smoke.fire", "gw-1") != incident_key("smoke.fire", "gw-2")
    assert incident_key("device.offline", "gw-1") == incident_key("gateway.offline", "gw-1")
    assert incident_key("wearable.fall", "gw-1", "res-1") == incident_key(
        "wearable.sos", "gw-9", "res-1")
    assert incident_key("device.battery", "gw-1", "res-1") == ""
    assert incident_key("manhole.displaced", "gw-1") == ""
