"""Loopback TCP relays that cut gateways' links to the broker on a schedule (live runs).

    hub = RelayHub("127.0.0.1", 1883)
    port = hub.add("gw-07", [(30.0, 60.0)])   # gw-07's agent connects to 127.0.0.1:port
    hub.start(t0=time.monotonic())            # windows are seconds after t0
    ...
    hub.close()
    hub.outages()                             # what was cut, when, and how much

While a window is open the gateway's link is down: its relayed connections are aborted (RST
to both ends, so the broker sees the connection die without a DISCONNECT and publishes the
agent's last will), and new connections are accepted and reset at once (the agent retries
with its backoff). When the window closes, connections are relayed again.

One thread serves every relay of the hub through a selector (epoll), so the relays' own
sockets are not bound by select()'s 1,024 descriptors; they still count towards them for
paho's sockets opened later in the same process.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

LOOPBACK = "127.0.0.1"
CHUNK = 1 << 16
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


@dataclass(slots=True)
class OutageRecord:
    """One link-down window of one gateway, as the relay carried it out."""

    gateway: str
    start_s: float
    end_s: float
    cut_at_s: float | None = None
    """seconds after t0 when the relay cut the link (None: the run ended first)"""
    restored_at_s: float | None = None
    connections_cut: int = 0
    """relayed connections aborted at the cut"""
    connects_refused: int = 0
    """connections the agent tried while the link was down (each reset at once)"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _abort(sock: socket.socket) -> None:
    """Close with RST, as a link that dies does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    with contextlib.suppress(OSError):
        sock.close()


@dataclass(eq=False, slots=True)
class _Pipe:
    """One relayed connection: the agent's socket and the broker's, and bytes not yet
    written to each."""

    agent: socket.socket
    broker: socket.socket
    pending: dict[socket.socket, bytearray] = field(default_factory=dict)

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.broker if sock is self.agent else self.agent


@dataclass(eq=False, slots=True)
class _Relay:
    gateway: str
    listener: socket.socket
    windows: list[OutageRecord]
    pipes: list[_Pipe] = field(default_factory=list)
    down: OutageRecord | None = None


class RelayHub:
    """Relays from loopback ports to the broker, each cut in its gateway's windows."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._sel = selectors.DefaultSelector()
        self._relays: list[_Relay] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()

    def add(self, gateway: str, windows: Sequence[tuple[float, float]]) -> int:
        """A relay for `gateway`, down in each (start_s, end_s) window; returns its port."""
        listener = socket.create_server((LOOPBACK, 0), backlog=16)
        listener.setblocking(False)
        records = [OutageRecord(gateway, float(s), float(e)) for s, e in sorted(windows)]
        relay = _Relay(gateway, listener, records)
        self._relays.append(relay)
        self._sel.register(listener, selectors.EVENT_READ, (relay, None))
        return int(listener.getsockname()[1])

    def __len__(self) -> int:
        return len(self._relays)

    def start(self, t0: float) -> None:
        """Serve from now; windows count from `t0` (time.monotonic())."""
        self._t0 = t0
        self._thread = threading.Thread(target=self._serve, name="sim-link-relays", daemon=True)
        self._thread.start()

    def outages(self) -> list[OutageRecord]:
        with self._lock:
            return [OutageRecord(**r.to_dict()) for relay in self._relays for r in relay.windows]

    def close(self) -> None:
        """Stop serving and close every socket (relayed connections close cleanly)."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(5.0)
        for relay in self._relays:
            for pipe in list(relay.pipes):
                self._close_pipe(relay, pipe, abort=False)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(relay.listener)
            relay.listener.close()
        self._sel.close()

    # -- the hub's thread ----------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._closing.is_set():
            self._apply_windows(time.monotonic() - self._t0)
            for key, mask in self._sel.select(timeout=0.05):
                relay, pipe = key.data
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    if pipe is None:
                        self._accept(relay)
                        continue
                    if mask & selectors.EVENT_WRITE:
                        self._flush(relay, pipe, sock)
                    if mask & selectors.EVENT_READ:
                        self._forward(relay, pipe, sock)
                except OSError:
                    self._close_pipe(relay, pipe, abort=True)

    def _apply_windows(self, now: float) -> None:
        for relay in self._relays:
            open_ = next((r for r in relay.windows if r.start_s <= now < r.end_s), None)
            if open_ is relay.down:
                continue
            with self._lock:
                if relay.down is not None:
                    relay.down.restored_at_s = round(now, 3)
                if open_ is not None:
                    open_.cut_at_s = round(now, 3)
                    open_.connections_cut += len(relay.pipes)
                relay.down = open_
            if open_ is not None:
                for pipe in list(relay.pipes):
                    self._close_pipe(relay, pipe, abort=True)

    def _accept(self, relay: _Relay) -> None:
        try:
            agent, _ = relay.listener.accept()
        except BlockingIOError:
            return
        if relay.down is not None:
            with self._lock:
                relay.down.connects_refused += 1
            _abort(agent)
            return
        try:
            broker = socket.create_connection(self._target, timeout=5.0)
        except OSError:
            _abort(agent)
            return
        for s in (agent, broker):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(agent, broker)
        relay.pipes.append(pipe)
        self._sel.register(agent, selectors.EVENT_READ, (relay, pipe))
        self._sel.register(broker, selectors.EVENT_READ, (relay, pipe))

    def _forward(self, relay: _Relay, pipe: _Pipe, sock: socket.socket) -> None:
        try:
            data = sock.recv(CHUNK)
        except BlockingIOError:
            return
        if not data:  # one end closed: close the other once what it is owed is written
            self._close_pipe(relay, pipe, abort=False)
            return
        peer = pipe.peer(sock)
        buf = pipe.pending.get(peer)
        if buf:
            buf += data
            return
        try:
            sent = peer.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            pipe.pending[peer] = bytearray(data[sent:])
            self._sel.modify(peer, selectors.EVENT_READ | selectors.EVENT_WRITE, (relay, pipe))

    def _flush(self, relay: _Relay, pipe: _Pipe, sock: socket.socket) -> None:
        buf = pipe.pending.get(sock)
        if buf:
            try:
                sent = sock.send(buf)
            except BlockingIOError:
                sent = 0
            del buf[:sent]
        if not buf:
            pipe.pending.pop(sock, None)
            self._sel.modify(sock, selectors.EVENT_READ, (relay, pipe))

    def _close_pipe(self, relay: _Relay, pipe: _Pipe, *, abort: bool) -> None:
        if pipe not in relay.pipes:
            return
        relay.pipes.remove(pipe)
        for s in (pipe.agent, pipe.broker):
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.unregister(s)
            if abort:
                _abort(s)
                continue
            buf = pipe.pending.get(s)
            with contextlib.suppress(OSError):
                if buf:
                    s.setblocking(True)
                    s.settimeout(1.0)
                    s.sendall(buf)
                s.close()
