"""A real HTTP receiver on loopback for webhook and Apprise json:// tests and simulations.

    with WebhookReceiver() as hook:
        ... POST to hook.url("/grid") ...
        hook.keys()          # Counter of Idempotency-Key values seen
        hook.requests()      # every request, in arrival order

`respond` scripts the answers: it gets the request and how many times its idempotency key was
seen before it (0 the first time) and returns a `Reply` (status, delay, headers), so a test can
answer 500 twice then 200, or hang past the sender's timeout.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """time.monotonic() when it arrived"""

    @property
    def key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


Respond = Callable[[Request, int], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the sender gave up waiting or was killed: as in life, not a test failure
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def always_ok(request: Request, seen: int) -> Reply:
    return Reply()


class WebhookReceiver:
    def __init__(self, respond: Respond = always_ok, host: str = "127.0.0.1") -> None:
        self.respond = respond
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._seen: Counter[str] = Counter()
        self._closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                body = self.rfile.read(length)
                request = Request(self.command, self.path,
                                  {k.lower(): v for k, v in self.headers.items()}, body,
                                  time.monotonic())
                reply = receiver._record(request)
                if reply.delay_s and receiver._closing.wait(reply.delay_s):
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_PUT = do_POST

        self._server = _Server((host, 0), Handler)
        self.port = int(self._server.server_address[1])
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name=f"webhook-receiver-{self.port}")

    def _record(self, request: Request) -> Reply:
        with self._lock:
            seen = self._seen[request.key or ""]
            self._seen[request.key or ""] += 1
            self._requests.append(request)
        return self.respond(request, seen)

    def url(self, path: str = "/hook", scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def keys(self) -> Counter[str]:
        """Requests per Idempotency-Key (requests without one count under "")."""
        with self._lock:
            return Counter(self._seen)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # delayed replies give up at once
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
