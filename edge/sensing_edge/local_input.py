"""A driver fed by other software on the gateway: JSON lines over loopback UDP or a Unix socket.

Existing sensor software (a vendor daemon, a serial-port reader, a shell script) hands its
readings to the agent by sending JSON lines to one of two local addresses:

- `udp://127.0.0.1:PORT` (or `udp://[::1]:PORT`): a UDP socket on loopback. Any other host is
  refused: the gateway must not accept readings from the network.
- `unix:///path/to.sock`: a Unix datagram socket (SOCK_DGRAM), created with mode 0o660 so
  that only the agent's user and group may send. A stale socket file left by an earlier run
  is replaced at start; the file is removed on `close()`.

One line is one reading object, UTF-8, in the shape of wire contract v1 *without* `seq` and
`epoch` (the agent numbers the readings it publishes, so a line that carries them is
rejected):

    {"device": "smoke-1", "kind": "smoke", "ts": 1795478819832,
     "values": {"obscuration": 0.1, "temp_c": 22.5}, "battery": 0.93}

(on one line). `device` (1-128 characters of `A-Za-z0-9_.:-`), `kind` (smoke, manhole, wearable)
and `values` (at most 64 channel -> number, channel names 1-64 characters of `A-Za-z0-9_.-`;
unknown channels are kept) are required (docs/contract.md, "Names"). `ts` is optional: integer
ms since the Unix epoch or an RFC 3339 string with an offset, within 2000..2100; without it
the reading gets the time of the poll that received it. `battery` is optional, 0.0-1.0.

A datagram holds one or more whole lines; a line never continues in the next datagram. From a
shell:

    echo '{"device":"smoke-1","kind":"smoke","values":{"obscuration":0.1}}' \\
        | socat - UDP:127.0.0.1:7777
    echo '{"device":"smoke-1","kind":"smoke","values":{"obscuration":0.1}}' \\
        | socat - UNIX-SENDTO:/run/sensing/input.sock

or from Python:

    python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(
        b"{\\"device\\":\\"smoke-1\\",\\"kind\\":\\"smoke\\",\\"values\\":{\\"obscuration\\":0.1}}\\n",
        ("127.0.0.1", 7777))'

(`cat readings.jsonl | socat ...` is fine for small files only: socat sends what it reads in
8 KiB blocks, which can cut a line in two; send larger files line by line.)

The kernel queues at most `net.unix.max_dgram_qlen` (default 10) datagrams on a Unix socket
until the agent's next poll (every 0.1 s by default): then a blocking sender waits and a
non-blocking one gets EAGAIN. A sender of many readings puts several lines in a datagram (up to
about 200 KiB), or uses UDP, whose queue is bytes (up to `net.core.rmem_max`), not datagrams.

`poll` drains the non-blocking socket and never waits. A line that is not a valid reading is
never fatal and never dropped unseen: it is counted (`stats()`), logged at warning level with
its reason and first 200 bytes, kept among the last rejects (`rejected()`) and handed to the
`on_reject` hook, which the agent may use to dead-letter it. On Linux, datagrams the kernel had
to drop because the socket's receive buffer was full are counted as `datagrams_dropped`.

    with LocalInput("udp://127.0.0.1:7777") as source:
        samples = source.poll(now_ms)
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import math
import os
import socket
import stat
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self
from urllib.parse import urlsplit

import orjson
import structlog

from sensing.wire.errors import WireError
from sensing.wire.json_codec import _number, _ts_field, device_and_kind
from sensing.wire.limits import (
    MAX_VALUES_PER_READING,
    TS_MAX_MS,
    TS_MIN_MS,
    bad_channel_reason,
    bad_device_reason,
)

from .drivers import SensorSample

log = structlog.get_logger(__name__)

RejectHook = Callable[[str, bytes], None]
"""`on_reject(reason, raw line)`: called for every rejected line, in the polling thread"""

SOCKET_MODE = 0o660
"""mode of the Unix socket file: the agent's user and group may send"""
LOG_BYTES = 200
"""how much of a rejected line goes into the log"""
UDP_BUFFER = 65536
"""larger than any UDP datagram"""
UNIX_BUFFER = 1 << 20
"""receive buffer for one Unix datagram (a sender's default limit is about 208 KiB)"""
RCVBUF_WANTED = 4 << 20
"""socket receive buffer asked for (the kernel caps it at net.core.rmem_max)"""
UNIX_PATH_MAX = 107
"""longest Unix socket path in bytes (sun_path, less its terminating NUL)"""
AGENT_FIELDS = ("seq", "epoch")
"""fields the agent assigns; a line must not carry them"""

_SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40 if sys.platform == "linux" else None)
_MSG_TRUNC = getattr(socket, "MSG_TRUNC", 0)
_RECV_FLAGS = _MSG_TRUNC if sys.platform == "linux" else 0
"""with MSG_TRUNC Linux returns a datagram's full length even when the buffer was too small"""


@dataclass(frozen=True, slots=True)
class LocalAddress:
    """A parsed local input address: `udp://127.0.0.1:PORT`, `udp://[::1]:PORT` or
    `unix:///absolute/path.sock`. Port 0 asks the kernel for a free port."""

    scheme: Literal["udp", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def from_address(cls, address: str) -> LocalAddress:
        """Parse `address`; a ValueError says what is wrong with it."""
        expected = "expected udp://127.0.0.1:PORT or unix:///path/to.sock"
        scheme, sep, rest = address.partition("://")
        if not sep:
            raise ValueError(f"local input address {address!r} has no scheme; {expected}")
        scheme = scheme.lower()
        if scheme == "unix":
            return cls._unix(address, rest)
        if scheme == "udp":
            return cls._udp(address)
        raise ValueError(f"local input address {address!r}: unsupported scheme {scheme!r}; "
                         f"{expected}")

    @classmethod
    def _unix(cls, address: str, path: str) -> LocalAddress:
        if not path.startswith("/"):
            raise ValueError(f"local input address {address!r}: a Unix socket needs an absolute "
                             "path, e.g. unix:///run/sensing/input.sock (three slashes)")
        if "\0" in path or path.endswith("/"):
            raise ValueError(f"local input address {address!r}: not a file path")
        if len(os.fsencode(path)) > UNIX_PATH_MAX:
            raise ValueError(f"local input address {address!r}: a Unix socket path may have at "
                             f"most {UNIX_PATH_MAX} bytes")
        return cls("unix", path=path)

    @classmethod
    def _udp(cls, address: str) -> LocalAddress:
        parts = urlsplit(address)
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"local input address {address!r}: the port must be a number "
                             "0-65535") from None
        host = parts.hostname
        if not host or port is None:
            raise ValueError(f"local input address {address!r}: expected udp://127.0.0.1:PORT")
        if parts.username or parts.password or parts.path not in ("", "/") or parts.query \
                or parts.fragment:
            raise ValueError(f"local input address {address!r}: expected udp://127.0.0.1:PORT, "
                             "nothing else")
        refused = (f"local input address {address!r}: host {host!r} is not a loopback address "
                   "(127.0.0.1 or [::1]); the gateway does not accept readings from the network")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(refused) from None
        if not ip.is_loopback:
            raise ValueError(refused)
        return cls("udp", host=str(ip), port=port)

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"udp://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LocalInputStats:
    """Counts since the driver opened; `lines_received == samples_accepted + lines_rejected`
    after every poll (a datagram too large to receive whole counts as one rejected line)."""

    lines_received: int
    samples_accepted: int
    lines_rejected: int
    bytes_received: int
    datagrams_dropped: int = 0
    """datagrams the kernel dropped because the receive buffer was full (Linux, UDP; reported
    with the next datagram that arrives)"""


def parse_line(line: bytes, default_ts: int) -> SensorSample:
    """One JSON line as a SensorSample; raises WireError with the reason it is not one."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"malformed JSON: {exc}") from None
    if type(obj) is not dict:
        raise WireError(f"a reading must be a JSON object, got {type(obj).__name__}")
    device, kind = device_and_kind(obj)
    reason = bad_device_reason(device, kind)
    if reason is not None:
        raise WireError(reason)
    raw_values = obj.get("values")
    if type(raw_values) is not dict:
        raise WireError("missing field 'values' (an object of channel: number)")
    if len(raw_values) > MAX_VALUES_PER_READING:
        raise WireError(f"more than {MAX_VALUES_PER_READING} values in one reading")
    values: dict[str, float] = {}
    for channel, value in raw_values.items():
        if (bad_name := bad_channel_reason(channel)) is not None:
            raise WireError(bad_name)  # the core would refuse it: say so here, at the source
        kind_of = type(value)
        x = float(value) if kind_of is float or kind_of is int else _number(
            value, f"value {channel[:40]!r}")
        if not math.isfinite(x):
            raise WireError(f"value {channel[:40]!r} must be a finite number")
        values[channel] = x
    for name in AGENT_FIELDS:
        if name in obj:
            raise WireError(f"{name!r} is assigned by the agent; leave it out")
    if obj.get("ts") is None:
        ts = default_ts
    else:
        ts = _ts_field(obj)
        if not TS_MIN_MS <= ts <= TS_MAX_MS:
            raise WireError("ts outside 2000-01-01 .. 2100-01-01")
    battery = obj.get("battery")
    if battery is not None:
        battery = _number(battery, "battery")
        if not 0.0 <= battery <= 1.0:
            raise WireError("battery must be between 0.0 and 1.0")
    return SensorSample(device, kind, ts, values, battery)


class LocalInput:
    """A `Driver` that receives JSON lines on a local socket (see the module docstring).

    `poll` handles at most `max_pending` lines, so at most that many samples; the rest wait
    in the socket (or, for a datagram already read, in the driver) for the next poll. Lines
    longer than `max_line_bytes` are rejected. The last `keep_rejected` rejects are kept for
    `rejected()`; `on_reject` is called for each one.
    """

    def __init__(
        self,
        address: str,
        *,
        max_line_bytes: int = 65536,
        max_pending: int = 100_000,
        on_reject: RejectHook | None = None,
        keep_rejected: int = 100,
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, got {max_line_bytes}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be positive, got {max_pending}")
        if keep_rejected < 0:
            raise ValueError(f"keep_rejected must not be negative, got {keep_rejected}")
        self.max_line_bytes = max_line_bytes
        self.max_pending = max_pending
        self.on_reject = on_reject
        self._where = LocalAddress.from_address(address)
        self._lock = threading.Lock()
        self._rejects: deque[tuple[str, bytes]] = deque(maxlen=keep_rejected)
        self._lines = self._accepted = self._rejected = self._bytes = self._dropped = 0
        self._backlog: list[bytes] = []
        """lines of the last datagram read that a poll had no room for"""
        self._pos = 0
        self._unix_file: tuple[int, int] | None = None
        """(st_dev, st_ino) of the socket file this driver created"""
        self._overflow = False
        if self._where.scheme == "unix":
            self._sock = self._open_unix(self._where.path)
            self._buf = bytearray(max(UNIX_BUFFER, max_line_bytes + 1))
        else:
            self._sock = self._open_udp(self._where.host, self._where.port)
            self._buf = bytearray(UDP_BUFFER)
            host, port = self._sock.getsockname()[:2]
            self._where = LocalAddress("udp", host=host, port=port)
        self._view = memoryview(self._buf)
        self._anc_size = socket.CMSG_SPACE(4) if self._overflow else 0
        self._closed = False

    @classmethod
    def from_address(
        cls,
        address: str,
        *,
        max_line_bytes: int = 65536,
        max_pending: int = 100_000,
        on_reject: RejectHook | None = None,
        keep_rejected: int = 100,
    ) -> LocalInput:
        """The same as the constructor (for symmetry with `LocalAddress.from_address`)."""
        return cls(address, max_line_bytes=max_line_bytes, max_pending=max_pending,
                   on_reject=on_reject, keep_rejected=keep_rejected)

    @property
    def address(self) -> str:
        """The bound address, with the actual port if port 0 was asked for."""
        return str(self._where)

    def __repr__(self) -> str:
        return f"LocalInput({self.address!r})"

    def _open_udp(self, host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_WANTED)
            if _SO_RXQ_OVFL is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, _SO_RXQ_OVFL, 1)
                    self._overflow = True
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise OSError(exc.errno, f"cannot bind {self._where}: {exc.strerror}") from None
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _open_unix(self, path: str) -> socket.socket:
        _remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            # Linux creates the file with the socket's mode less the umask: no moment in which
            # it is more open than SOCKET_MODE (the chmod below then undoes a narrower umask).
            with contextlib.suppress(OSError):
                os.fchmod(sock.fileno(), SOCKET_MODE)
            try:
                sock.bind(path)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot bind {self._where}: {exc.strerror}") from None
            st = os.stat(path)
            self._unix_file = (st.st_dev, st.st_ino)
            os.chmod(path, SOCKET_MODE)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_WANTED)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            self._remove_unix_file()
            raise
        return sock

    def _remove_unix_file(self) -> None:
        if self._unix_file is None:
            return
        path = self._where.path
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == self._unix_file:  # not a successor's socket
                os.unlink(path)
        self._unix_file = None

    def close(self) -> None:
        """Close the socket and remove the Unix socket file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._sock.close()
        self._remove_unix_file()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stats(self) -> LocalInputStats:
        with self._lock:
            return LocalInputStats(self._lines, self._accepted, self._rejected, self._bytes,
                                   self._dropped)

    def rejected(self) -> list[tuple[str, bytes]]:
        """The last rejects as (reason, raw line), oldest first."""
        with self._lock:
            return list(self._rejects)

    def poll(self, now_ms: int) -> list[SensorSample]:
        """The readings received since the last poll (at most `max_pending`); never waits."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        out: list[SensorSample] = []
        append = out.append
        max_line = self.max_line_bytes
        budget = self.max_pending
        lines = rejected = nbytes = 0
        backlog, pos = self._backlog, self._pos
        try:
            while budget > 0:
                if pos >= len(backlog):
                    got = self._receive()
                    if got is None:
                        break
                    size, data = got
                    nbytes += size
                    if data is None:
                        lines += 1
                        rejected += 1
                        budget -= 1
                        self._reject(f"datagram of {size} bytes is larger than the receive "
                                     f"buffer of {len(self._buf)} bytes",
                                     bytes(self._view[:max_line]))
                        continue
                    backlog, pos = data.split(b"\n"), 0
                end = min(len(backlog), pos + budget)
                for i in range(pos, end):
                    line = backlog[i]
                    if not line or line.isspace():
                        continue
                    lines += 1
                    if len(line) > max_line:
                        rejected += 1
                        self._reject(f"line of {len(line)} bytes is longer than "
                                     f"max_line_bytes={max_line}", line[:max_line])
                        continue
                    try:
                        append(parse_line(line, now_ms))
                    except WireError as exc:
                        rejected += 1
                        self._reject(str(exc), line)
                    except Exception as exc:  # a case parse_line missed: still just this line
                        rejected += 1
                        self._reject(f"{type(exc).__name__}: {exc}", line)
                budget -= end - pos
                pos = end
        finally:
            if pos >= len(backlog):
                backlog, pos = [], 0
            self._backlog, self._pos = backlog, pos
            with self._lock:
                self._lines += lines
                self._accepted += len(out)
                self._rejected += rejected
                self._bytes += nbytes
        return out

    def _receive(self) -> tuple[int, bytes | None] | None:
        """(size, datagram) of the next datagram, (size, None) if it was too large to receive
        whole, None if there is none (or the socket failed, which is logged)."""
        try:
            size, anc, flags, _ = self._sock.recvmsg_into([self._buf], self._anc_size,
                                                          _RECV_FLAGS)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            log.warning("local_input_receive_failed", address=self.address, error=str(exc))
            return None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == _SO_RXQ_OVFL and len(data) >= 4:
                dropped = struct.unpack("=I", data[:4])[0]  # the socket's running count
                with self._lock:
                    self._dropped = max(self._dropped, dropped)
        if flags & _MSG_TRUNC or size > len(self._buf):
            return size, None
        return size, bytes(self._view[:size])

    def _reject(self, reason: str, raw: bytes) -> None:
        with self._lock:
            self._rejects.append((reason, raw))
        log.warning("local_input_rejected", address=self.address, reason=reason,
                    line=raw[:LOG_BYTES].decode("utf-8", "backslashreplace"))
        if self.on_reject is not None:
            try:
                self.on_reject(reason, raw)
            except Exception:
                log.exception("local_input_on_reject_failed", address=self.address)


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file nobody receives on; refuse to touch anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket; not replacing "
                              "it", path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:  # nobody bound to it: left by an earlier run
            os.unlink(path)
            return
    raise OSError(errno.EADDRINUSE, f"{path} is in use by a running receiver")
