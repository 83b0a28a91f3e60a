"""Looking into VictoriaMetrics: how many rows it has taken in so far (cheap, for timing), how
many readings a series selector holds (PromQL, for polling), the exact tally of which readings
are stored how often (export, at the end), and the store's own ingest limit."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import orjson

from sensing.services import LOOPBACK, VictoriaMetrics
from sensing.testing.counting import Tally

LOOKBACK = "3d"
"""the readings of a run are at most a few hours old (ROUND_MS times the rounds)"""
MAX_RESPONSE_BYTES = 4 << 30


class StoreError(RuntimeError):
    pass


def ingested_rows(store: VictoriaMetrics) -> int:
    """Rows (one per field of a line) the store has accepted through the InfluxDB line
    protocol so far, from its own /metrics: a counter that moves the moment a write is
    taken, before the rows are searchable."""
    with urllib.request.urlopen(f"{store.url}/metrics", timeout=10) as r:
        text = r.read(64 << 20).decode()
    for line in text.splitlines():
        if line.startswith('vm_rows_inserted_total{type="influx"}'):
            return int(float(line.split()[-1]))
    raise StoreError("the store's /metrics has no vm_rows_inserted_total for influx")


def count_samples(store: VictoriaMetrics, selector: str) -> int:
    """Samples of every series matching `selector` (one per stored reading when the selector
    names one field per reading, e.g. '{__name__="reading_seq"}')."""
    store.flush()
    query = f"sum(count_over_time({selector}[{LOOKBACK}]))"
    params = urllib.parse.urlencode({"query": query, "time": f"{time.time() + 600:.3f}"})
    with urllib.request.urlopen(f"{store.url}/api/v1/query?{params}", timeout=60) as r:
        body = orjson.loads(r.read(MAX_RESPONSE_BYTES))
    result = body.get("data", {}).get("result", []) if isinstance(body, dict) else []
    if not result:
        return 0
    return int(float(result[0]["value"][1]))


def _export(store: VictoriaMetrics, selector: str) -> Iterator[dict[str, object]]:
    store.flush()
    params = urllib.parse.urlencode({"match[]": selector, "start": "0",
                                     "end": str(int(time.time()) + 86400)})
    conn = http.client.HTTPConnection(LOOPBACK, store.port, timeout=300)
    try:
        conn.request("GET", f"/api/v1/export?{params}")
        resp = conn.getresponse()
        if resp.status != 200:
            raise StoreError(f"export answered {resp.status}: {resp.read(500)!r}")
        rest = b""
        while chunk := resp.read(1 << 20):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line.strip():
                    yield orjson.loads(line)
        if rest.strip():
            yield orjson.loads(rest)
    finally:
        conn.close()


def tally(store: VictoriaMetrics, selector: str, device_index: dict[str, int],
          seq_base: int, counts: npt.NDArray[np.int64]) -> Tally:
    """Sent: device i (by name in `device_index`, label `device`) sent seqs seq_base ..<
    seq_base + counts[i], epoch 0; seqs below seq_base are earlier phases' and left out.
    Every series of `selector` holds one field of readings, its values the seqs."""
    by_device: dict[int, list[npt.NDArray[np.int64]]] = {}
    unexpected = 0
    for series in _export(store, selector):
        labels, values = series["metric"], series["values"]
        assert isinstance(labels, dict) and isinstance(values, list)
        d = device_index.get(str(labels.get("device", "")), -1)
        if d < 0:
            unexpected += len(values)
            continue
        by_device.setdefault(d, []).append(np.asarray(values, dtype=np.float64)
                                           .astype(np.int64))
    found = twice = 0
    for d, parts in by_device.items():
        seqs = np.concatenate(parts)
        seqs = seqs[seqs >= seq_base]
        ok = seqs < seq_base + counts[d]
        distinct = np.unique(seqs[ok]).size
        found += distinct
        twice += int(ok.sum()) - distinct
        unexpected += int((~ok).sum())
    sent = int(counts.sum())
    return Tally(sent=sent, stored=found, lost=sent - found, stored_twice=twice,
                 unexpected=unexpected)


WRITE_CONNECTIONS = 4
"""connections writing at once: one waits for each answer, and the store parses and inserts
requests in parallel, so one connection alone would measure the client, not the store"""


def _write_all(store: VictoriaMetrics, bodies: list[bytes], errors: list[str]) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, store.port, timeout=120)
    path = "/api/v2/write?org=sensing&bucket=sensing&precision=ms"
    try:
        for body in bodies:
            conn.request("POST", path, body=body,
                         headers={"Content-Type": "text/plain; charset=utf-8"})
            resp = conn.getresponse()
            resp.read()
            if resp.status // 100 != 2:
                errors.append(f"the store answered {resp.status} to a write")
                return
    except OSError as exc:
        errors.append(f"writing to the store: {exc}")
    finally:
        conn.close()


def write_limit(store: VictoriaMetrics, bodies: list[bytes],
                connections: int = WRITE_CONNECTIONS) -> None:
    """Write `bodies` straight to the store's /api/v2/write over `connections` keep-alive
    connections at once (threads of this process), each waiting for every answer."""
    errors: list[str] = []
    threads = [threading.Thread(target=_write_all, args=(store, bodies[i::connections], errors))
               for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise StoreError(errors[0])
