"""LocalInput: JSON lines from software on the gateway, over loopback UDP or a Unix socket."""

from __future__ import annotations

import os
import socket
import stat
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from sensing.services import free_port
from sensing.wire.kinds import KINDS
from sensing.wire.validate import TS_MAX_MS, TS_MIN_MS
from sensing_edge import SensorSample
from sensing_edge.local_input import LocalAddress, LocalInput

NOW = 1_795_478_819_832
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def line(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def smoke(device: str = "smoke-1", **fields: Any) -> bytes:
    return line(device=device, kind="smoke", values={"obscuration": 0.1}, **fields)


def udp(**kw: Any) -> LocalInput:
    return LocalInput(f"udp://127.0.0.1:{free_port()}", **kw)


def send(src: LocalInput, *datagrams: bytes) -> None:
    """Send each datagram to `src` from a fresh client socket of the matching family. (The
    kernel queues only net.unix.max_dgram_qlen datagrams on a Unix socket: a blocking sender
    would wait for a poll that never comes, so this one does not block.)"""
    where = LocalAddress.from_address(src.address)
    if where.scheme == "unix":
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx:
            tx.setblocking(False)
            for d in datagrams:
                tx.sendto(d, where.path)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for d in datagrams:
                tx.sendto(d, (where.host, where.port))


def poll_lines(src: LocalInput, lines: int, now_ms: int = NOW) -> list[SensorSample]:
    """Poll until `lines` more lines have been handled (loopback delivery is not instant)."""
    target = src.stats().lines_received + lines
    out: list[SensorSample] = []
    deadline = time.monotonic() + 5.0
    while src.stats().lines_received < target:
        assert time.monotonic() < deadline, f"only {src.stats()} of {target} lines"
        out.extend(src.poll(now_ms))
    return out


@pytest.fixture
def source() -> Iterator[LocalInput]:
    with udp() as src:
        yield src


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "in.sock")


# --- UDP -------------------------------------------------------------------------------------


def test_udp_lines_in_one_and_across_datagrams(source: LocalInput) -> None:
    a = line(device="smoke-1", kind="smoke", ts=NOW - 5000,
             values={"obscuration": 0.4, "temp_c": 22, "co_ppm": 1.5}, battery=0.93)
    b = line(device="mh-7", kind="manhole", values={"tilt_deg": 0.5, "extra": -3})
    c = line(device="wb-2", kind="wearable", ts=NOW - 1, values={"heart_rate": 71, "sos": 0})
    send(source, a + b"\n" + b + b"\n", c)  # the last line without a newline
    samples = poll_lines(source, 3, now_ms=NOW + 123)
    assert samples == [
        SensorSample("smoke-1", "smoke", NOW - 5000,
                     {"obscuration": 0.4, "temp_c": 22.0, "co_ppm": 1.5}, 0.93),
        SensorSample("mh-7", "manhole", NOW + 123, {"tilt_deg": 0.5, "extra": -3.0}, None),
        SensorSample("wb-2", "wearable", NOW - 1, {"heart_rate": 71.0, "sos": 0.0}, None),
    ]
    assert all(type(v) is float for s in samples for v in s.values.values())
    stats = source.stats()
    assert (stats.lines_received, stats.samples_accepted, stats.lines_rejected) == (3, 3, 0)
    assert stats.bytes_received == len(a) + len(b) + len(c) + 2
    assert source.rejected() == []


def test_ts_defaults_to_the_now_of_the_poll_that_received_it(source: LocalInput) -> None:
    send(source, smoke("a"))
    first = poll_lines(source, 1, now_ms=NOW + 1)
    send(source, smoke("b") + b"\n" + smoke("c", ts=None))  # null is the same as absent
    later = poll_lines(source, 2, now_ms=NOW + 2000)
    assert [(s.device, s.ts) for s in first + later] == [
        ("a", NOW + 1), ("b", NOW + 2000), ("c", NOW + 2000)]


@pytest.mark.parametrize(("ts", "expected"), [
    ("2026-11-24T10:00:00.250+08:00", datetime(2026, 11, 24, 2, 0, 0, 250_000, tzinfo=UTC)),
    ("2026-11-24T02:00:00Z", datetime(2026, 11, 24, 2, tzinfo=UTC)),
    ("2026-11-23T20:30:00.001-05:30", datetime(2026, 11, 24, 2, 0, 0, 1000, tzinfo=UTC)),
])
def test_rfc3339_ts(source: LocalInput, ts: str, expected: datetime) -> None:
    send(source, smoke(ts=ts))
    [sample] = poll_lines(source, 1)
    assert sample.ts == (expected - EPOCH) // timedelta(milliseconds=1)


def test_crlf_and_blank_lines_are_fine(source: LocalInput) -> None:
    send(source, b"\n" + smoke("a") + b"\r\n   \n\r\n" + smoke("b") + b"\r\n")
    assert [s.device for s in poll_lines(source, 2)] == ["a", "b"]
    assert source.stats().lines_received == 2  # blank lines are not lines


def test_poll_returns_at_once_when_nothing_arrived(source: LocalInput) -> None:
    for _ in range(3):
        t = time.perf_counter()
        assert source.poll(NOW) == []
        assert time.perf_counter() - t < 0.05
    send(source, smoke())
    assert len(poll_lines(source, 1)) == 1
    t = time.perf_counter()
    assert source.poll(NOW) == []
    assert time.perf_counter() - t < 0.05


def test_max_pending_bounds_a_poll_and_loses_nothing() -> None:
    with udp(max_pending=10) as src:
        lines = [smoke(f"d{i}") for i in range(25)]
        send(src, b"\n".join(lines[:13]), *lines[13:])  # a datagram larger than one poll
        deadline = time.monotonic() + 5.0
        polls: list[list[str]] = []
        while sum(map(len, polls)) < 25:
            assert time.monotonic() < deadline
            got = [s.device for s in src.poll(NOW)]
            assert len(got) <= 10
            if got:
                polls.append(got)
        assert [d for p in polls for d in p] == [f"d{i}" for i in range(25)]
        assert len(polls[0]) == 10
        assert src.poll(NOW) == []


def test_port_zero_binds_a_free_port() -> None:
    with LocalInput("udp://127.0.0.1:0") as src:
        port = LocalAddress.from_address(src.address).port
        assert port > 0
        send(src, smoke())
        assert len(poll_lines(src, 1)) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="SO_RXQ_OVFL is Linux only")
def test_datagrams_the_kernel_dropped_are_counted(source: LocalInput) -> None:
    datagram = smoke()
    sent = 60_000  # far more than the socket's receive buffer holds
    send(source, *[datagram] * sent)
    while source.poll(NOW) or source.poll(NOW):
        pass
    assert source.stats().samples_accepted < sent
    # the kernel reports its running drop count with the next datagram it queues
    send(source, datagram)
    sent += 1
    deadline = time.monotonic() + 5.0
    while (stats := source.stats()).samples_accepted + stats.datagrams_dropped < sent:
        assert time.monotonic() < deadline, stats
        source.poll(NOW)
    assert stats.datagrams_dropped > 0
    assert stats.samples_accepted + stats.datagrams_dropped == sent


# --- Unix datagram socket --------------------------------------------------------------------


def test_unix_socket_receives_and_is_removed_on_close(sock_path: str) -> None:
    src = LocalInput(f"unix://{sock_path}")
    try:
        assert src.address == f"unix://{sock_path}"
        st_ = os.stat(sock_path)
        assert stat.S_ISSOCK(st_.st_mode)
        assert stat.S_IMODE(st_.st_mode) == 0o660
        a = line(device="smoke-1", kind="smoke", ts="2026-11-24T02:00:00Z",
                 values={"obscuration": 0.2}, battery=0.5)
        send(src, a + b"\n" + smoke("smoke-2") + b"\n", smoke("smoke-3"))
        samples = poll_lines(src, 3, now_ms=NOW + 7)
        assert samples == [
            SensorSample("smoke-1", "smoke", 1_795_485_600_000, {"obscuration": 0.2}, 0.5),
            SensorSample("smoke-2", "smoke", NOW + 7, {"obscuration": 0.1}),
            SensorSample("smoke-3", "smoke", NOW + 7, {"obscuration": 0.1}),
        ]
        assert src.poll(NOW) == []
    finally:
        src.close()
    assert not os.path.exists(sock_path)
    src.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        src.poll(NOW)


def test_unix_mode_does_not_depend_on_the_umask(sock_path: str) -> None:
    old = os.umask(0o077)
    try:
        with LocalInput(f"unix://{sock_path}"):
            assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660
    finally:
        os.umask(old)


def test_a_stale_unix_socket_file_is_replaced(sock_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(sock_path)
    stale.close()  # an earlier run that died: the file stays, nobody receives
    assert os.path.exists(sock_path)
    with LocalInput(f"unix://{sock_path}") as src:
        send(src, smoke())
        assert len(poll_lines(src, 1)) == 1
    assert not os.path.exists(sock_path)


def test_a_live_unix_socket_or_another_file_is_not_replaced(sock_path: str, tmp_path: Path) -> None:
    with LocalInput(f"unix://{sock_path}") as first:
        with pytest.raises(OSError, match="in use"):
            LocalInput(f"unix://{sock_path}")
        send(first, smoke())
        assert len(poll_lines(first, 1)) == 1  # still the first one's socket
    other = tmp_path / "data.txt"
    other.write_text("keep me")
    with pytest.raises(FileExistsError, match="not a socket"):
        LocalInput(f"unix://{other}")
    assert other.read_text() == "keep me"


def test_close_leaves_a_successors_socket_file_alone(sock_path: str) -> None:
    src = LocalInput(f"unix://{sock_path}")
    os.unlink(sock_path)
    successor = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        successor.bind(sock_path)
        src.close()
        assert os.path.exists(sock_path)
    finally:
        successor.close()


# --- rejections ------------------------------------------------------------------------------

BAD_LINES = [
    pytest.param(b'{"device": "smoke-1", "kind": "smoke", "values":', "malformed JSON", id="json"),
    pytest.param(b'{"device":"s","kind":"smoke","values":{"x":NaN}}', "malformed JSON", id="nan"),
    pytest.param(b'{"device":"s","kind":"smoke","values":{"x":1e999}}', "malformed JSON",
                 id="infinity"),
    pytest.param(b'{"device":"\xff","kind":"smoke","values":{}}', "malformed JSON", id="utf8"),
    pytest.param(b"[1, 2]", "must be a JSON object", id="array"),
    pytest.param(line(kind="smoke", values={"x": 1}), "'device'", id="no-device"),
    pytest.param(line(device=7, kind="smoke", values={"x": 1}), "'device'", id="int-device"),
    pytest.param(line(device="s", values={"x": 1}), "'kind'", id="no-kind"),
    pytest.param(line(device="s", kind="smoke"), "'values'", id="no-values"),
    pytest.param(line(device="s", kind="smoke", values=[1]), "'values'", id="list-values"),
    pytest.param(line(device="s", kind="toaster", values={"x": 1}), "unknown kind", id="kind"),
    pytest.param(line(device="", kind="smoke", values={"x": 1}), "characters of", id="empty-id"),
    pytest.param(line(device="a\x07b", kind="smoke", values={"x": 1}), "characters of",
                 id="bell"),
    pytest.param(line(device="d" * 129, kind="smoke", values={"x": 1}), "characters of",
                 id="long-id"),
    pytest.param(line(device="s", kind="smoke", values={"a\nb": 1}), "channel 'a\\nb'",
                 id="newline-channel"),
    pytest.param(line(device="s", kind="smoke", values={"": 1}), "channel ''",
                 id="empty-channel"),
    pytest.param(line(device="s", kind="smoke", values={"x": "0.4"}), "must be a number",
                 id="string-value"),
    pytest.param(line(device="s", kind="smoke", values={"x": True}), "must be a number",
                 id="bool-value"),
    pytest.param(line(device="s", kind="smoke", values={"x": None}), "must be a number",
                 id="null-value"),
    pytest.param(smoke(battery=1.5), "battery", id="battery-high"),
    pytest.param(smoke(battery=-0.01), "battery", id="battery-low"),
    pytest.param(smoke(battery="full"), "battery", id="battery-string"),
    pytest.param(smoke(ts="yesterday"), "RFC 3339", id="ts-text"),
    pytest.param(smoke(ts="2026-11-24T02:00:00"), "time zone", id="ts-naive"),
    pytest.param(smoke(ts=1.5e12), "integer", id="ts-float"),
    pytest.param(smoke(ts=TS_MIN_MS - 1), "ts outside", id="ts-early"),
    pytest.param(smoke(ts=TS_MAX_MS + 1), "ts outside", id="ts-late"),
    pytest.param(smoke(ts=1_795_478_819), "ts outside", id="ts-seconds"),
    pytest.param(smoke(seq=1), "assigned by the agent", id="seq"),
    pytest.param(smoke(epoch=0), "assigned by the agent", id="epoch"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_LINES)
def test_a_bad_line_is_rejected_and_the_lines_around_it_are_kept(bad: bytes, reason: str) -> None:
    hooked: list[tuple[str, bytes]] = []
    with udp(on_reject=lambda r, raw: hooked.append((r, raw))) as src:
        with capture_logs() as logs:
            send(src, smoke("before") + b"\n" + bad + b"\n" + smoke("after"))
            samples = poll_lines(src, 3)
        assert [s.device for s in samples] == ["before", "after"]
        stats = src.stats()
        assert (stats.lines_received, stats.samples_accepted, stats.lines_rejected) == (3, 2, 1)
        [(why, raw)] = src.rejected()
        assert reason in why
        assert raw == bad
        assert hooked == [(why, raw)]
        [entry] = [e for e in logs if e["event"] == "local_input_rejected"]
        assert entry["log_level"] == "warning"
        assert entry["reason"] == why
        assert entry["line"] == bad[:200].decode("utf-8", "backslashreplace")
        assert entry["address"] == src.address


def test_an_oversized_line_is_rejected_with_its_size() -> None:
    with udp(max_line_bytes=256) as src, capture_logs() as logs:
        big = line(device="s", kind="smoke", values={"x" * 400: 1.0})
        just_fits = line(device="s", kind="smoke", values={"x": 1.0})
        just_fits = just_fits[:-1] + b" " * (256 - len(just_fits)) + b"}"
        assert len(just_fits) == 256
        send(src, smoke("before") + b"\n" + big + b"\n" + just_fits + b"\n" + smoke("after"))
        samples = poll_lines(src, 4)
        assert [s.device for s in samples] == ["before", "s", "after"]
        [(why, raw)] = src.rejected()
        assert why == f"line of {len(big)} bytes is longer than max_line_bytes=256"
        assert raw == big[:256]
        [entry] = [e for e in logs if e["event"] == "local_input_rejected"]
        assert len(entry["line"]) == 200


def test_rejects_keep_the_last_n_and_a_failing_hook_does_not_stop_the_poll() -> None:
    def hook(reason: str, raw: bytes) -> None:
        raise RuntimeError("dead-letter queue down")

    with udp(keep_rejected=3, on_reject=hook) as src, capture_logs() as logs:
        bad = [line(device=f"d{i}", kind="toaster", values={}) for i in range(5)]
        send(src, b"\n".join([*bad, smoke("ok")]))
        assert [s.device for s in poll_lines(src, 6)] == ["ok"]
        assert [raw for _, raw in src.rejected()] == bad[2:]
        assert src.stats().lines_rejected == 5
        assert sum(e["event"] == "local_input_on_reject_failed" for e in logs) == 5


def test_unix_rejections_are_counted_too(sock_path: str) -> None:
    with LocalInput(f"unix://{sock_path}") as src:
        send(src, b"nonsense\n" + smoke("ok"), b"{}")
        assert [s.device for s in poll_lines(src, 3)] == ["ok"]
        assert [r.split(":")[0] for r, _ in src.rejected()] == [
            "malformed JSON", "missing or non-string field 'device'"]


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize("address", [
    "udp://0.0.0.0:7777", "udp://192.168.1.10:7777", "udp://[::]:7777", "udp://10.0.0.1:7777",
    "udp://gateway.example.com:7777", "udp://localhost:7777", "udp://[fe80::1]:7777",
])
def test_a_host_that_is_not_loopback_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match=r"not a loopback address.*from the network"):
        LocalInput(address)


@pytest.mark.parametrize(("address", "message"), [
    ("tcp://127.0.0.1:7777", "unsupported scheme 'tcp'"),
    ("http://127.0.0.1:7777", "unsupported scheme 'http'"),
    ("127.0.0.1:7777", "no scheme"),
    ("/run/sensing/input.sock", "no scheme"),
    ("unix://run/input.sock", "absolute path"),
    ("unix:///" + "x" * 200, "at most 107 bytes"),
    ("udp://127.0.0.1", "expected udp://127.0.0.1:PORT"),
    ("udp://127.0.0.1:99999", "0-65535"),
    ("udp://127.0.0.1:port", "0-65535"),
    ("udp://127.0.0.1:7777/readings", "nothing else"),
])
def test_a_bad_address_is_refused_with_a_clear_error(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalAddress.from_address(address)
    with pytest.raises(ValueError, match=message):
        LocalInput.from_address(address)


def test_addresses_parse() -> None:
    assert LocalAddress.from_address("udp://127.0.0.1:7777") == LocalAddress(
        "udp", host="127.0.0.1", port=7777)
    assert LocalAddress.from_address("UDP://127.0.0.2:7") == LocalAddress(
        "udp", host="127.0.0.2", port=7)
    six = LocalAddress.from_address("udp://[::1]:7777")
    assert (six.host, six.port, str(six)) == ("::1", 7777, "udp://[::1]:7777")
    assert LocalAddress.from_address("unix:///run/x.sock") == LocalAddress(
        "unix", path="/run/x.sock")


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        LocalInput("udp://127.0.0.1:0", max_line_bytes=0)
    with pytest.raises(ValueError, match="max_pending"):
        LocalInput("udp://127.0.0.1:0", max_pending=0)
    with pytest.raises(ValueError, match="keep_rejected"):
        LocalInput("udp://127.0.0.1:0", keep_rejected=-1)


def test_importing_the_driver_does_not_import_numba() -> None:
    code = "import sensing_edge.local_input, sys; assert 'numba' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- property --------------------------------------------------------------------------------

ZONES = [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
DEVICE_ID_CHARS = string.ascii_letters + string.digits + "_.:-"
CHANNEL_CHARS = string.ascii_letters + string.digits + "_.-"
"""the contract's alphabets of device ids and channel names (docs/contract.md, "Names")"""
numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
rfc3339 = st.builds(
    lambda dt, zone: dt.replace(microsecond=dt.microsecond // 1000 * 1000, tzinfo=UTC)
    .astimezone(zone),
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)),
    st.sampled_from(ZONES),
)
readings = st.fixed_dictionaries(
    {
        "device": st.text(DEVICE_ID_CHARS, min_size=1, max_size=128),
        "kind": st.sampled_from(KINDS),
        "values": st.dictionaries(st.text(CHANNEL_CHARS, min_size=1, max_size=20), numbers,
                                  max_size=6),
    },
    optional={
        "ts": st.integers(TS_MIN_MS, TS_MAX_MS) | rfc3339,
        "battery": st.floats(0.0, 1.0),
    },
)


def expected_sample(r: dict[str, Any]) -> SensorSample:
    ts = r.get("ts", NOW)
    if isinstance(ts, datetime):
        ts = (ts - EPOCH) // timedelta(milliseconds=1)
    return SensorSample(r["device"], r["kind"], ts,
                        {k: float(v) for k, v in r["values"].items()}, r.get("battery"))


@settings(max_examples=60, deadline=None)
@given(
    batch=st.lists(readings, max_size=25),
    per_datagram=st.integers(1, 5),
    transport=st.sampled_from(["udp", "unix"]),
)
def test_valid_readings_come_back_field_by_field(
    tmp_path_factory: pytest.TempPathFactory,
    batch: list[dict[str, Any]],
    per_datagram: int,
    transport: str,
) -> None:
    lines = [orjson.dumps({k: v.isoformat() if isinstance(v, datetime) else v
                           for k, v in r.items()}) for r in batch]
    address = (f"udp://127.0.0.1:{free_port()}" if transport == "udp"
               else f"unix://{tmp_path_factory.mktemp('p')}/in.sock")
    with LocalInput(address) as src:
        samples: list[SensorSample] = []
        for i in range(0, len(lines), per_datagram):
            datagram = b"\n".join(lines[i:i + per_datagram])
            while True:
                try:
                    send(src, datagram)
                    break
                except BlockingIOError:  # the Unix socket's queue is full: the agent polls
                    samples.extend(src.poll(NOW))
        samples.extend(poll_lines(src, len(lines) - src.stats().lines_received))
        assert samples == [expected_sample(r) for r in batch]
        assert src.rejected() == []
        assert src.poll(NOW) == []


def test_a_datagram_larger_than_the_receive_buffer_is_one_reject(sock_path: str) -> None:
    with LocalInput(f"unix://{sock_path}") as src:
        src._buf = bytearray(64)  # the real buffer (1 MiB) is more than a sender can send
        src._view = memoryview(src._buf)
        big = smoke("x" * 100)
        send(src, big, smoke("ok"))
        assert [s.device for s in poll_lines(src, 2)] == ["ok"]
        [(why, raw)] = src.rejected()
        assert why == f"datagram of {len(big)} bytes is larger than the receive buffer of 64 bytes"
        assert raw == big[:64]
        assert src.stats().bytes_received == len(big) + len(smoke("ok"))
