"""Writes line protocol through influxdb-client (InfluxDB v2 write API), retrying until stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import structlog
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

log = structlog.get_logger("sensing.store")


class StoreUnavailable(RuntimeError):
    """The store could not take a write before the core was asked to stop."""


class StoreWriter:
    def __init__(
        self, url: str, token: str, org: str, bucket: str, timeout_s: float = 10.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.url = url
        self.bucket = bucket
        self.org = org
        self._client = InfluxDBClient(url=url, token=token or "unused", org=org,
                                      timeout=int(timeout_s * 1000))
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._max_backoff = max_backoff_s
        self.points_written = 0
        self.failures = 0

    def write(self, lines: Sequence[str | bytes] | bytes, stop: threading.Event) -> None:
        """Store all lines or raise StoreUnavailable once `stop` is set; never drops them.

        `lines`: line-protocol lines, or blocks of newline-separated lines as bytes (one
        batch's readings), or one such block."""
        if isinstance(lines, bytes):
            lines = [lines]
        lines = [x for x in lines if x]
        if not lines:
            return
        body = b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines)
        points = body.count(b"\n") + 1
        backoff = 0.2
        while True:
            try:
                self._api.write(bucket=self.bucket, org=self.org, record=body,
                                write_precision=WritePrecision.MS)  # type: ignore[arg-type]
            except Exception as exc:  # the client raises many types; all mean "not stored"
                self.failures += 1
                log.warning("store write failed, retrying", url=self.url, error=str(exc)[:200],
                            lines=points, retry_in_s=backoff)
                if stop.wait(backoff):
                    raise StoreUnavailable(str(exc)) from exc
                backoff = min(backoff * 2, self._max_backoff)
                continue
            self.points_written += points
            if backoff > 0.2:
                log.info("store reachable again", url=self.url)
            return

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]


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
