"""Writes line protocol through influxdb-client (InfluxDB v2 write API).

Outages (no connection, timeouts, 5xx, 429, and answers such as 401/403/404 that say nothing
about the lines) are retried until the store takes the write or the caller stops. A request the
store refuses for its lines (400, 413, 422) is split in halves until the lines it refuses are
alone: those come back to the caller as rejected (it dead-letters them), the others
are stored. One bad line can therefore never stall the lines behind it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import structlog
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from sensing.redact import redact_text, redact_url

log = structlog.get_logger("sensing.store")


class StoreUnavailable(RuntimeError):
    """The store could not take a write before the core was asked to stop."""


@dataclass(frozen=True, slots=True)
class Rejected:
    line: bytes
    reason: str
    """the store's answer, e.g. 'HTTP 400: line too long'"""


REFUSING_STATUSES = frozenset({400, 413, 422})
"""answers about the request's lines: bad line protocol or a line too long (400), too large
(413), a point outside the retention period (422, InfluxDB). Anything else — a wrong token
(401), no permission (403), no such bucket (404), throttling (429), 5xx — says nothing about
the lines: retried as an outage, however long it lasts, so a misconfigured store loses no
reading."""


def _refusal(exc: BaseException) -> str | None:
    """The store's reason if it refused the request's lines (retrying cannot help), else None."""
    if isinstance(exc, ApiException) and exc.status is not None:
        status = int(exc.status)
        if status in REFUSING_STATUSES:
            body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(
                exc.body or exc.reason or "")
            return f"HTTP {status}: {body.strip()[:300]}"
    return None


class StoreWriter:
    def __init__(
        self, url: str, token: str, org: str, bucket: str, timeout_s: float = 10.0,
        max_backoff_s: float = 5.0, request_bytes: int = 4 << 20,
    ) -> None:
        self.url = redact_url(url)
        """for log lines: the password and token of the URL masked"""
        self.bucket = bucket
        self.org = org
        self._client = InfluxDBClient(url=url, token=token or "unused", org=org,
                                      timeout=int(timeout_s * 1000))
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._max_backoff = max_backoff_s
        self.request_bytes = request_bytes
        """line protocol in one request, about: blocks of lines are written in consecutive
        runs of this size, not joined into one copy of them all"""
        self.points_written = 0
        self.failures = 0
        self.rejected = 0

    def write(self, lines: Sequence[str | bytes] | bytes, stop: threading.Event,
              retry: bool = True) -> list[Rejected]:
        """Store every line the store accepts, retrying outages; returns the lines it refused.
        Raises StoreUnavailable once `stop` is set while the store is out, or at the first
        outage without `retry` (some of the lines may be stored then: the store keeps one
        sample per series and time, so writing them all again is harmless).

        `lines`: line-protocol lines, or blocks of newline-separated lines as bytes (one
        batch's readings), or one such block; written in requests of about `request_bytes`
        (a larger block is a request alone)."""
        if isinstance(lines, bytes):
            lines = [lines]
        blocks = [x if isinstance(x, bytes) else x.encode() for x in lines if x]
        rejected: list[Rejected] = []
        for request in requests(blocks, self.request_bytes):
            self._write_splitting(b"\n".join(request), stop, rejected, retry)
        self.rejected += len(rejected)
        return rejected

    def _write_splitting(self, body: bytes, stop: threading.Event,
                         rejected: list[Rejected], retry: bool) -> None:
        reason = self._write_until_taken(body, stop, retry)
        if reason is None:
            self.points_written += body.count(b"\n") + 1
            return
        parts = body.split(b"\n")
        if len(parts) == 1:
            rejected.append(Rejected(body, reason))
            log.error("store refused a line", url=self.url, reason=reason, bytes=len(body))
            return
        half = len(parts) // 2
        self._write_splitting(b"\n".join(parts[:half]), stop, rejected, retry)
        self._write_splitting(b"\n".join(parts[half:]), stop, rejected, retry)

    def _write_until_taken(self, body: bytes, stop: threading.Event,
                           retry: bool = True) -> str | None:
        """None once stored; the store's reason if it refuses the request."""
        backoff = 0.2
        while True:
            try:
                self._api.write(bucket=self.bucket, org=self.org, record=body,
                                write_precision=WritePrecision.MS)  # type: ignore[arg-type]
            except Exception as exc:  # the client raises many types; all mean "not stored"
                refused = _refusal(exc)
                if refused is not None:
                    return refused
                self.failures += 1
                if not retry:
                    raise StoreUnavailable(redact_text(str(exc))[:200]) from exc
                log.warning("store write failed, retrying", url=self.url,
                            error=redact_text(str(exc))[:200], bytes=len(body), retry_in_s=backoff)
                if stop.wait(backoff):
                    raise StoreUnavailable(redact_text(str(exc))[:200]) from exc
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if backoff > 0.2:
                log.info("store reachable again", url=self.url)
            return None

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]


def requests(blocks: list[bytes], size: int) -> Iterator[list[bytes]]:
    """Consecutive runs of `blocks` of about `size` bytes (a larger block is a run alone)."""
    run: list[bytes] = []
    held = 0
    for block in blocks:
        if run and held + len(block) > size:
            yield run
            run, held = [], 0
        run.append(block)
        held += len(block)
    if run:
        yield run


def wait_for_store(url: str, timeout_s: float) -> bool:
    """True once `url`/health answers (used at start-up, not in the write path)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False
