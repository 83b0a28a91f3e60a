"""Hostile inputs for the core: hypothesis strategies for what an attacker or a broken gateway
can put on the readings, status and ack topics, and a named corpus of the exact inputs of
issue 11's problems 1-8.

Every input says what the core may do with it: `must_dead_letter` (the contract refuses it),
`stores` (the readings it names, if the core finds it valid) or `silent` (valid and neither
stored nor refused: a good status, a cleared retained status). An input that is neither
dead-lettered nor stored nor allowed to be silent has vanished.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import json
import random
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from sensing.testing.counting import ReadingKey
from sensing.wire import snb1
from sensing.wire.kinds import KIND_CHANNELS, KINDS
from sensing.wire.limits import TS_MIN_MS

AREA = "fuzz"
RESERVED = ("alerts", "dispatch", "ack", "deadletter", "core")
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class HostileInput:
    name: str
    """what it is: the strategy's branch, or the corpus entry (issue11-p<N>-...)"""
    topic: str
    payload: bytes
    retain: bool = False
    must_dead_letter: bool = False
    stores: frozenset[ReadingKey] = frozenset()
    silent: bool = False
    whole_gateway: bool = False
    """any reading stored under the topic's gateway counts as this input's (a corrupted batch
    may store readings under names nobody sent, so its gateway is its own)"""


@dataclass(frozen=True, slots=True)
class Expectation:
    """A check on the alerts a corpus entry leads to: `alert_type` raised for `device`
    (`raised=True`) or never raised for any of `devices` (`raised=False`)."""

    name: str
    devices: tuple[str, ...]
    alert_type: str
    raised: bool


@dataclass(slots=True)
class Corpus:
    inputs: list[HostileInput] = field(default_factory=list)
    expectations: list[Expectation] = field(default_factory=list)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def readings_topic(gateway: str, area: str = AREA) -> str:
    return f"sensing/v1/{area}/{gateway}/readings"


def status_topic(gateway: str, area: str = AREA) -> str:
    return f"sensing/v1/{area}/{gateway}/status"


def quiet_values(kind: str) -> dict[str, float]:
    return {"smoke": {"obscuration": 0.1, "temp_c": 22.0, "co_ppm": 1.0},
            "manhole": {"tilt_deg": 0.4, "water_m": 2.2, "gas_lel": 0.3},
            "wearable": {"heart_rate": 72.0, "spo2": 97.0, "accel_g": 1.0, "steps": 3.0,
                         "sos": 0.0}}[kind]


def reading(device: str, kind: str, seq: int, ts: int, epoch: int = 0,
            values: dict[str, Any] | None = None, battery: Any = 0.9) -> dict[str, Any]:
    return {"device": device, "kind": kind, "seq": seq, "epoch": epoch, "ts": ts,
            "values": quiet_values(kind) if values is None else values, "battery": battery}


def dumps(doc: Any) -> bytes:
    """JSON as a careless client writes it: integers of any size, NaN and Infinity as bare
    words, lone surrogates as raw (invalid) UTF-8."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass")


# -- the binary batch formats ---------------------------------------------------------------

SnbEncoder = Callable[[Sequence[snb1.Reading]], bytes]


def snb_encoders() -> dict[str, SnbEncoder]:
    """Encoders of the binary batch versions this tree writes, by name: "snb1" always;
    "snb2" (SNB1 with a CRC-32 trailer) when `encode_readings` takes a `version`."""
    if "version" not in inspect.signature(snb1.encode_readings).parameters:
        return {"snb1": snb1.encode_readings}
    encode: Callable[..., bytes] = snb1.encode_readings
    return {"snb1": functools.partial(encode, version=1),
            "snb2": functools.partial(encode, version=2)}


def _header_and_tables(*args: Any) -> bytes:
    """SNB1's header and tables, whatever version the tree's encoder writes by default."""
    make: Callable[..., bytes] = snb1.header_and_tables
    if "version" in inspect.signature(make).parameters:
        return make(*args, version=1)
    return make(*args)


def snb_batch(encoder: SnbEncoder, gateway: str, device_prefix: str, n: int, seq0: int,
              ts0: int, area: str = AREA) -> tuple[bytes, frozenset[ReadingKey]]:
    rows: list[snb1.Reading] = []
    keys: set[ReadingKey] = set()
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        device = f"{device_prefix}-{i}"
        rows.append((device, kind, 0, seq0, ts0 + i, quiet_values(kind), 0.9))
        keys.add((gateway, device, 0, seq0))
    return encoder(rows), frozenset(keys)


def flip_bytes(payload: bytes, rng: random.Random, flips: int) -> bytes:
    raw = bytearray(payload)
    for _ in range(flips):
        i = rng.randrange(len(raw))
        raw[i] ^= rng.randrange(1, 256)
    return bytes(raw)


def empty_device_table(devices: int, channels: int = 0) -> bytes:
    """An SNB1 batch naming `devices` devices (and `channels` channels) with no readings."""
    names = ((f"d{i:05d}", "smoke") for i in range(devices))
    return _header_and_tables(names, (f"c{i}" for i in range(channels)), devices, channels,
                              0, 0)


# -- hypothesis strategies ------------------------------------------------------------------

_serial = itertools.count()


def _unique(draw: st.DrawFn) -> int:
    """A number no other input of this process has: device ids made from it are new, so a
    hostile reading is never a silent duplicate of an earlier one (the hypothesis draw only
    varies the gateway it goes to)."""
    return next(_serial) * 32 + draw(st.integers(0, 31))


_NAME_CHARS = st.characters(codec="utf-8", exclude_categories=["Cs"])
hostile_names = st.one_of(
    st.just(""), st.just("a\nb"), st.just("a b"), st.just("a,b=c"), st.just("x" * 300),
    st.just("émoji-🔥"), st.just("back\\slash"), st.just("tab\tname"), st.just("nul\0x"),
    st.text(_NAME_CHARS, min_size=0, max_size=80),
)
"""names as a client may send them: empty, with newlines and separators, unicode, long"""

hostile_numbers = st.one_of(
    st.just(INT64_MAX), st.just(2**64), st.just(10**23), st.just(-(2**63)), st.just(-1),
    st.just(1e308), st.just(-1e308), st.just(5e-324), st.just(True), st.just(None),
    st.just("12"), st.just([1]), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
)
"""numbers a JSON parser turns into something awkward (NaN and Infinity are spliced in as
text, since JSON has no literal for them)"""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=12,
)


@st.composite
def random_bytes_inputs(draw: st.DrawFn) -> HostileInput:
    leaf = draw(st.sampled_from(["readings", "status", "ack"]))
    payload = draw(st.binary(min_size=1, max_size=512))
    gw = f"fz-{draw(st.integers(0, 31))}"
    topic = {"readings": readings_topic(gw), "status": status_topic(gw),
             "ack": "sensing/v1/ack"}[leaf]
    return HostileInput(f"random-bytes-{leaf}", topic, payload, must_dead_letter=True)


@st.composite
def wrong_shape_inputs(draw: st.DrawFn) -> HostileInput:
    leaf = draw(st.sampled_from(["readings", "status", "ack"]))
    doc = draw(json_values)
    gw = f"fz-{draw(st.integers(0, 31))}"
    topic = {"readings": readings_topic(gw), "status": status_topic(gw),
             "ack": "sensing/v1/ack"}[leaf]
    return HostileInput(f"json-wrong-shape-{leaf}", topic, dumps(doc),
                        must_dead_letter=True)


_READING_FIELDS = ("device", "kind", "seq", "epoch", "ts", "values", "battery", "channel",
                   "value", "missing")


@st.composite
def bad_reading_inputs(draw: st.DrawFn) -> HostileInput:
    """A good reading with one field made hostile; JSON, alone or in an array."""
    n = _unique(draw)
    gw = f"fz-{n % 32}"
    kind = draw(st.sampled_from(KINDS))
    good = reading(f"fz-dev-{n}", kind, draw(st.integers(0, 1000)), now_ms() - 1000)
    target = draw(st.sampled_from(_READING_FIELDS))
    name = f"reading-bad-{target}"
    raw_splice: bytes | None = None
    may_store = False
    if target in ("device", "kind"):
        good[target] = draw(hostile_names)
        may_store = True  # a printable unicode id may be allowed
    elif target in ("seq", "epoch", "battery"):
        good[target] = draw(hostile_numbers)
        may_store = True
    elif target == "ts":
        good["ts"] = draw(st.one_of(
            st.just(4_102_444_000_000), st.just(99_999_999_999_999_999_999_999), st.just(1),
            st.just(0), st.just(-1), st.just(now_ms() + 86_400_000 * 365),
            st.just("2999-01-01T00:00:00Z"), st.just("yesterday"), st.just(1.5e12)))
        may_store = True
    elif target == "values":
        good["values"] = draw(st.one_of(
            st.just({}), st.just([]), st.just(None), st.just("x"), json_values,
            st.dictionaries(hostile_names, hostile_numbers, min_size=1, max_size=4)))
        may_store = True
    elif target == "channel":
        good["values"] = {draw(hostile_names): 1.0, **quiet_values(kind)}
        may_store = True
    elif target == "value":
        special = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999",
                                        "1" + "0" * 400]))
        channel = KIND_CHANNELS[kind][0]
        good["values"] = {channel: 0.0}
        raw_splice = special.encode()
        name = "reading-bad-value-" + special[:8]
    else:
        good.pop(draw(st.sampled_from(["device", "kind", "seq", "ts", "values"])))
    body = dumps(good)
    if raw_splice is not None:
        body = body.replace(b'":0.0}', b'":' + raw_splice + b"}", 1)
    as_array = draw(st.booleans())
    if as_array:
        body = b"[" + body + b"]"
    keys: frozenset[ReadingKey] = frozenset()
    if may_store and isinstance(good.get("device"), str) and isinstance(good.get("seq"), int):
        keys = frozenset({(gw, str(good["device"]),
                           good["epoch"] if isinstance(good.get("epoch"), int) else 0,
                           int(good["seq"]))})
    return HostileInput(name, readings_topic(gw), body, must_dead_letter=not keys, stores=keys)


@st.composite
def batch_inputs(draw: st.DrawFn) -> HostileInput:
    """Arrays: empty, of wrong things, of many readings, of huge values tables."""
    n = _unique(draw)
    gw = f"fz-{n % 32}"
    what = draw(st.sampled_from(["empty", "nulls", "many", "channels", "tables"]))
    if what == "tables":
        devices = draw(st.sampled_from([1, 100, 5000]))
        return HostileInput(f"snb1-{devices}-devices-no-readings", readings_topic(gw),
                            empty_device_table(devices, draw(st.sampled_from([0, 10]))),
                            must_dead_letter=True)
    if what == "empty":
        return HostileInput("batch-empty-json", readings_topic(gw), b"[]",
                            must_dead_letter=True)
    if what == "nulls":
        return HostileInput("batch-of-nulls", readings_topic(gw), b"[null, 1, \"x\"]",
                            must_dead_letter=True)
    if what == "many":
        count = draw(st.sampled_from([1000, 5000, 20000]))
        docs = [reading(f"fz-many-{n}-{i}", "smoke", 0, now_ms() - 1000) for i in range(count)]
        keys = frozenset((gw, str(d["device"]), 0, 0) for d in docs)
        return HostileInput(f"batch-many-{count}", readings_topic(gw), dumps(docs),
                            stores=keys)
    count = draw(st.sampled_from([500, 5000]))
    doc = reading(f"fz-chan-{n}", "smoke", 0, now_ms() - 1000,
                  values={f"ch{i}": float(i) for i in range(count)})
    return HostileInput(f"reading-{count}-channels", readings_topic(gw), dumps(doc),
                        stores=frozenset({(gw, f"fz-chan-{n}", 0, 0)}))


def _own_gateway(name: str, payload: bytes, n: int, must_dead_letter: bool = True
                 ) -> HostileInput:
    """A damaged batch (made for gateway fz-<n % 32>) sent on a gateway of its own."""
    return HostileInput(name, readings_topic(f"fz-own-{n}"), payload,
                        must_dead_letter=must_dead_letter, whole_gateway=True)


@st.composite
def binary_inputs(draw: st.DrawFn) -> HostileInput:
    """SNB1 (and SNB2 when present) batches: good, flipped, truncated, cut, empty tables,
    reserved header fields, unknown versions, epochs and seqs at their limits."""
    encoders = snb_encoders()
    version = draw(st.sampled_from(sorted(encoders)))
    encode = encoders[version]
    n = _unique(draw)
    gw = f"fz-{n % 32}"
    size = draw(st.integers(1, 20))
    payload, keys = snb_batch(encode, gw, f"fz-{version}-{n}", size, draw(st.integers(0, 99)),
                              now_ms() - 5000)
    what = draw(st.sampled_from(["good", "flipped", "truncated", "extended", "reserved",
                                 "version", "limits"]))
    rng = random.Random(n)
    if what == "good":
        return HostileInput(f"{version}-good", readings_topic(gw), payload, stores=keys)
    if what == "flipped":
        flipped = flip_bytes(payload, rng, draw(st.integers(1, 4)))
        if flipped == payload:
            return HostileInput(f"{version}-good", readings_topic(gw), payload, stores=keys)
        # SNB1 has no checksum: a flip in a value column decodes as another valid batch
        return _own_gateway(f"{version}-flipped", flipped, n, must_dead_letter=version != "snb1")
    if what == "truncated":
        # a draw whose bounds do not depend on the payload's length (names hold a serial
        # number: hypothesis must see the same choices when it replays a case)
        cut = 1 + draw(st.integers(0, 1 << 20)) % (len(payload) - 1)
        return _own_gateway(f"{version}-truncated", payload[:cut], n)
    if what == "extended":
        return _own_gateway(f"{version}-extended",
                            payload + draw(st.binary(min_size=1, max_size=64)), n)
    if what == "reserved":
        raw = bytearray(payload)
        if draw(st.booleans()):
            raw[5] = draw(st.integers(1, 255))  # flags
        else:
            struct.pack_into("<H", raw, 10, draw(st.integers(1, 0xFFFF)))  # reserved
        # SNB1 is read as before (its flags and reserved field were never checked); SNB2's
        # checksum covers them
        return _own_gateway(f"{version}-reserved-set", bytes(raw), n,
                            must_dead_letter=version != "snb1")
    if what == "version":
        raw = bytearray(payload)
        raw[4] = draw(st.sampled_from([0, 3, 99, 255]))
        return _own_gateway(f"{version}-unknown-version", bytes(raw), n)
    big = draw(st.sampled_from([INT64_MAX, 2**62, 2**53 + 1]))
    row = (f"fz-lim-{n}", "smoke", 0, big, now_ms() - 1000, quiet_values("smoke"), 0.9)
    return HostileInput(f"{version}-seq-at-limit", readings_topic(gw), encode([row]),
                        stores=frozenset({(gw, f"fz-lim-{n}", 0, big)}))


@st.composite
def status_inputs(draw: st.DrawFn) -> HostileInput:
    n = _unique(draw)
    gw = f"fz-st-{n % 64}"
    state = draw(st.sampled_from(["online", "offline", "ONLINE", "", "maybe", None, 1]))
    ts = draw(st.one_of(st.just(now_ms()), st.just(99_999_999_999_999_999_999_999),
                        st.just(1), st.just(-5), st.just(4_102_444_000_000),
                        st.just("now"), st.just(None), st.just(1.5), st.integers()))
    doc: dict[str, Any] = {"state": state, "ts": ts}
    if draw(st.booleans()):
        doc["extra"] = draw(json_values)
    # a retained status may be old (a gateway offline for a week); one from the future beyond
    # the clock-skew allowance, or from before 2000, is refused; an hour ahead may go either way
    sane = state in ("online", "offline") and isinstance(ts, int) and not isinstance(ts, bool) \
        and TS_MIN_MS <= ts <= now_ms() + 3_600_000
    return HostileInput("status-sane" if sane else "status-bad", status_topic(gw),
                        dumps(doc), must_dead_letter=not sane, silent=sane)


@st.composite
def ack_inputs(draw: st.DrawFn) -> HostileInput:
    responder = draw(st.sampled_from(["", "mallory", "grid-1"]))
    topic = "sensing/v1/ack" + (f"/{responder}" if responder else "")
    doc = {"alert_id": draw(st.one_of(st.text(max_size=40), st.just("x" * 1000), st.none())),
           "by": draw(st.one_of(st.just(responder or "someone"), hostile_names)),
           "action": draw(st.sampled_from(["ack", "resolve", "delete", "", None]))}
    return HostileInput("ack-" + ("identified" if responder else "bare"), topic,
                        dumps(doc), must_dead_letter=True)


@st.composite
def topic_inputs(draw: st.DrawFn) -> HostileInput:
    """Good readings on topics the contract refuses: reserved areas, bad names."""
    n = _unique(draw)
    area, gateway = draw(st.sampled_from([
        *((r, f"gw-{n % 8}") for r in RESERVED),
        ("bad area", "gw-1"), ("fuzz", "gw é"), ("x" * 65, "gw-1"), ("fuzz", "g" * 65),
        ("fuzz", "gw.1"), ("", "gw-1")]))
    body = dumps(reading(f"fz-topic-{n}", "smoke", 0, now_ms() - 1000))
    return HostileInput("topic-reserved-area" if area in RESERVED else "topic-bad-name",
                        f"sensing/v1/{area}/{gateway}/readings", body, must_dead_letter=True)


def hostile_inputs() -> st.SearchStrategy[HostileInput]:
    """One hostile input of any kind (weights favour the cheap ones)."""
    return st.one_of(
        random_bytes_inputs(), wrong_shape_inputs(), bad_reading_inputs(), bad_reading_inputs(),
        bad_reading_inputs(), binary_inputs(), binary_inputs(), binary_inputs(),
        status_inputs(), ack_inputs(), topic_inputs(),
        st.integers(0, 29).flatmap(lambda i: batch_inputs() if i == 0 else bad_reading_inputs()),
    )


# -- issue 11's problems 1-8, as sent ---------------------------------------------------------

P6_GATEWAY = "p6-gw"
P6_AREA = "fuzz-good"
P5_AREA = "fuzz-p5"
ALERT_AREAS = (P5_AREA, P6_AREA)
"""the areas whose alerts a fuzz run checks (the hostile area's own alerts are a storm of
device.offline for devices that spoke once)"""


def issue11_corpus(p4_tables: int = 150) -> Corpus:
    """The exact inputs of issue 11's problems 1-8, each named `issue11-p<N>-<what>`.

    Problem 6 targets the good traffic's gateway `P6_GATEWAY` (its devices keep reporting, so
    a device.offline among them is the storm); problem 5's fire follows on its device."""
    c = Corpus()
    t = now_ms()
    add = c.inputs.append
    big_ts = b'{"state":"online","ts":99999999999999999999999}'
    add(HostileInput("issue11-p1-status-ts-overflow", "sensing/v1/a/gw/status", big_ts,
                     must_dead_letter=True))
    add(HostileInput("issue11-p1-status-ts-overflow-retained", "sensing/v1/a/gw-r/status",
                     big_ts, retain=True, must_dead_letter=True))
    long_channel = reading("p2-dev", "smoke", 0, t, values={"c" * 900_000: 1.0})
    add(HostileInput("issue11-p2-900k-channel-name", readings_topic("p2-gw"),
                     dumps(long_channel), must_dead_letter=True))
    rows: list[snb1.Reading] = [("p2-snb-dev", "smoke", 0, 0, t,
                                 {f"channel-{i:05d}": 1.0 for i in range(20_000)},
                                 0.9)]
    add(HostileInput("issue11-p2-snb1-20000-channels", readings_topic("p2-gw"),
                     snb_encoders()["snb1"](rows), must_dead_letter=True))
    for label, chan in (("newline", "a\nb"), ("empty", "")):
        doc = reading(f"p3-dev-{label}", "smoke", 0, t, values={chan: 1.0, "temp_c": 20.0})
        add(HostileInput(f"issue11-p3-channel-{label}", readings_topic("p3-gw"),
                         dumps(doc), must_dead_letter=True))
    table = empty_device_table(65_535)
    for i in range(p4_tables):
        add(HostileInput("issue11-p4-65535-device-table-no-readings", readings_topic(
            f"p4-gw-{i % 4}"), table, must_dead_letter=True))
    for what in ("seq", "epoch"):
        dev = f"p5-dev-{what}"
        hostile = reading(dev, "smoke", 0, t - 60_000)
        hostile[what] = INT64_MAX
        keys = frozenset({("p5-gw", dev, hostile["epoch"], hostile["seq"])})
        add(HostileInput(f"issue11-p5-{what}-int64-max", readings_topic("p5-gw", P5_AREA),
                         dumps(hostile), stores=keys))
        for s in range(1, 9):  # 8 s of fire after it
            fire = reading(dev, "smoke", 0, t - 50_000 + 1000 * s,
                           values={"obscuration": 30.0, "temp_c": 80.0, "co_ppm": 5.0})
            fire["seq"] = s
            add(HostileInput(f"issue11-p5-{what}-fire-after", readings_topic("p5-gw", P5_AREA),
                             dumps(fire), stores=frozenset({("p5-gw", dev, 0, s)})))
        c.expectations.append(Expectation(f"issue11-p5-{what}: the fire is detected", (dev,),
                                          "smoke.fire", raised=True))
    future = reading(f"{P6_GATEWAY}-dev-0", "smoke", 0, 4_102_444_000_000)
    future["seq"] = 10**6
    add(HostileInput("issue11-p6-ts-4102444000000", readings_topic(P6_GATEWAY, P6_AREA),
                     dumps(future),
                     stores=frozenset({(P6_GATEWAY, f"{P6_GATEWAY}-dev-0", 0, 10**6)})))
    c.expectations.append(Expectation(
        "issue11-p6: no device.offline storm", tuple(f"{P6_GATEWAY}-dev-{i}" for i in range(20)),
        "device.offline", raised=False))
    rng = random.Random(7)
    for version, encode in snb_encoders().items():
        for i in range(100):
            payload, keys = snb_batch(encode, "p7-gw", f"p7-{version}-{i}", 5, 0, t - 3000)
            flipped = flip_bytes(payload, rng, 1)
            add(HostileInput(f"issue11-p7-{version}-one-byte-flipped",
                             readings_topic(f"p7-gw-{version}-{i}"), flipped,
                             must_dead_letter=version != "snb1", whole_gateway=True))
    add(HostileInput("issue11-p8-snb1-zero-readings", readings_topic("p8-gw"),
                     empty_device_table(0), must_dead_letter=True))
    add(HostileInput("issue11-p8-area-alerts", "sensing/v1/alerts/p8-gw/readings",
                     dumps(reading("p8-dev", "smoke", 0, t)), must_dead_letter=True))
    add(HostileInput("issue11-p8-2mb-status", status_topic("p8-gw"),
                     b'{"state":"online","ts":1,"pad":"' + b"x" * (2 << 20) + b'"}',
                     must_dead_letter=True))
    add(HostileInput("issue11-p8-status-ts-1", status_topic("p8-gw"),
                     b'{"state":"online","ts":1}', must_dead_letter=True))
    return c
