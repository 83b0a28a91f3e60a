"""Where `sensing-sim score` gets its labels, alerts and dead letters from.

- `read_run`: the labels, and what the run report says (malformed messages sent by reason, the
  run's start and end), from a live report or a labels file.
- `read_messages`: alert transitions, dead letters and case messages from a file of the
  contract's messages (JSON lines or a JSON array, as the topics carry them; `listen --save`
  writes such a file). A record with an `alert_id` is an alert, one with `reason` and
  `payload` a dead letter, one with `case_id` and `event` (and no `alert_id`) a case's change.
- `listen`: a plain paho client on `sensing/v1/alerts/#`, `sensing/v1/deadletter/#` and
  `sensing/v1/cases/#`.
- `query_store`: the alert transitions the core stored, from VictoriaMetrics' export API.
  The core writes each transition as line protocol (`sensing.store.lineprotocol`): measurement
  `alert`, tags area, gateway, device, type, grade, state, alert_id, field `ts_event`, and the
  point's timestamp is `ts_raised` in ms, so VictoriaMetrics keeps one series per (alert,
  grade, state) named `alert_ts_event`, each sample's timestamp the raise time of that
  transition. Every field the scorer needs comes back exact; nothing is approximated. Only the
  transition's `value` (a separate series, `alert_value`) and `reason` (not stored) are left
  out. Two transitions of one alert with the same grade and state in the same millisecond would
  be one sample (the store keeps one point per series and time); the scorer needs only the
  first raise and the highest grade, which that cannot change. The core does not store dead
  letters: `query_store` cannot count them.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sensing.wire import topics
from sensing_sim.score import Alert, label_speed

ALERT_MEASUREMENT_FIELD = "alert_ts_event"
"""the VictoriaMetrics metric of every stored alert transition (measurement `alert`, field
`ts_event`)"""
_ALERT_PREFIX = topics.ALERTS_FILTER.removesuffix("#")
_DEADLETTER_PREFIX = topics.DEADLETTER_FILTER.removesuffix("#")
CASES_FILTER = f"{topics.PREFIX}/cases/#"
_CASES_PREFIX = CASES_FILTER.removesuffix("#")


class SourceUnavailable(RuntimeError):
    """The broker or the store could not be reached or did not answer as expected."""


@dataclass(frozen=True, slots=True)
class Run:
    """Labels and what is known about the run that made them."""

    labels: list[dict[str, Any]]
    malformed_sent: dict[str, int] | None = None
    """malformed messages the run sent, by reason; None when the file is not a run report"""
    start_ms: int | None = None
    end_ms: int | None = None
    stopping_ms: int | None = None
    """when a live run began stopping its agents (each then says offline)"""

    def shutdown_alert(self, alert: Alert) -> bool:
        """A gateway.offline the run's own shutdown caused: raised once its agents began to
        stop. Not an incident, not a false positive: the score leaves it out."""
        return (self.stopping_ms is not None and alert.type == "gateway.offline"
                and alert.ts_raised >= self.stopping_ms)

    def span_ms(self, grace_s: float) -> tuple[int, int] | None:
        """(first, last) wall-clock ms an alert of this run can be raised at and still count:
        from the run's start (or the first label's) to the last label's end plus its grace
        (in its own speed) or the run's end, whichever is later; None if nothing tells."""
        starts = [int(lb["ts_start"]) for lb in self.labels]
        ends = [int(lb["ts_end"]) + round(grace_s * 1000 / label_speed(lb))
                for lb in self.labels]
        if self.start_ms is not None:
            starts.append(self.start_ms)
        if self.end_ms is not None:
            ends.append(self.end_ms)
        if not starts or not ends:
            return None
        return min(starts), max(ends)


def _records(doc: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise ValueError(f"{what}: expected JSON objects")
    return [dict(r) for r in doc]


def _json_records(text: bytes, what: str) -> list[dict[str, Any]] | dict[str, Any]:
    """A JSON array, one JSON object (returned as a dict), or JSON lines of objects."""
    stripped = text.lstrip()
    if stripped.startswith(b"[") or (stripped.startswith(b"{") and b"\n{" not in stripped):
        doc = orjson.loads(text)
        return dict(doc) if isinstance(doc, dict) else _records(doc, what)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{what}, line {n}: {exc}") from None
    return _records(out, what)


def read_run(path: Path) -> Run:
    """Labels from JSON lines, a JSON array, or a live report (its `incidents`, with its
    `malformed_sent`, `start_ms` and `end_ms`)."""
    doc = _json_records(path.read_bytes(), str(path))
    if isinstance(doc, list):
        return Run(doc)
    if "incidents" not in doc:
        return Run([doc])
    malformed = doc.get("malformed_sent")
    if malformed is not None and not (isinstance(malformed, dict) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in malformed.values())):
        raise ValueError(f"{path}: malformed_sent must be an object of reason: count")

    def ms(key: str) -> int | None:
        value = doc.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return Run(_records(doc["incidents"], f"{path}: incidents"),
               None if malformed is None else {str(k): v for k, v in malformed.items()},
               ms("start_ms"), ms("end_ms"), ms("stopping_ms"))


def read_malformed_sent(path: Path) -> dict[str, int]:
    """`malformed_sent` of a live report."""
    run = read_run(path)
    if run.malformed_sent is None:
        raise ValueError(f"{path} is not a live run report (it has no 'malformed_sent')")
    return run.malformed_sent


def is_alert(record: Mapping[str, Any]) -> bool:
    return "alert_id" in record


def is_deadletter(record: Mapping[str, Any]) -> bool:
    return "alert_id" not in record and "reason" in record and "payload" in record


def is_case(record: Mapping[str, Any]) -> bool:
    """A case's change (`sensing/v1/cases/{area}`), with the `ts` the score needs."""
    return ("alert_id" not in record and "case_id" in record and "event" in record
            and isinstance(record.get("ts"), int) and not isinstance(record.get("ts"), bool))


@dataclass(slots=True)
class Messages:
    """What the alerts, dead-letter and cases topics carried (or a store or file gave back)."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    deadletters: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)

    def add(self, record: dict[str, Any], where: str) -> None:
        if is_alert(record):
            self.alerts.append(record)
        elif is_deadletter(record):
            self.deadletters.append(record)
        elif is_case(record):
            self.cases.append(record)
        else:
            raise ValueError(f"{where}: neither an alert (no alert_id), a dead letter "
                             "(reason and payload) nor a case's change (case_id, event, ts)")


def read_messages(path: Path) -> Messages:
    """Alert transitions, dead letters and case changes from a file of the contract's
    messages."""
    doc = _json_records(path.read_bytes(), str(path))
    out = Messages()
    for n, record in enumerate([doc] if isinstance(doc, dict) else doc, 1):
        out.add(record, f"{path}, record {n}")
    return out


def read_deadletters(path: Path) -> list[dict[str, Any]]:
    """Dead letters from a file of the contract's messages (alerts in it are skipped)."""
    return read_messages(path).deadletters


class _Saver:
    """Appends each message heard to a JSON-lines file as it arrives."""

    def __init__(self, out: IO[bytes] | None) -> None:
        self.out = out

    def write(self, record: dict[str, Any]) -> None:
        if self.out is not None:
            self.out.write(orjson.dumps(record) + b"\n")
            self.out.flush()


def listen(host: str, port: int, stop_at: Callable[[], float], save: Path | None = None,
           on_ready: Callable[[], None] | None = None, connect_timeout_s: float = 10.0,
           stop: threading.Event | None = None) -> Messages:
    """Alerts, dead letters and case changes heard on the broker until `time.time()` reaches
    `stop_at()` (asked again and again: it may move), `stop` is set, or Ctrl-C; `on_ready`
    runs once the subscriptions are granted. A message that is not JSON, or of no such kind,
    is skipped."""
    heard = Messages()
    lock = threading.Lock()
    subscribed, connected = threading.Event(), threading.Event()
    failure: list[str] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"sensing-sim-score-{uuid.uuid4().hex[:12]}")

    def on_connect(c: mqtt.Client, u: object, flags: object, rc: Any, p: object) -> None:
        if rc.is_failure:
            failure.append(f"the broker refused the connection: {rc}")
        else:
            c.subscribe([(topics.ALERTS_FILTER, 1), (topics.DEADLETTER_FILTER, 1),
                         (CASES_FILTER, 1)])
        connected.set()

    def on_subscribe(c: mqtt.Client, u: object, mid: int, codes: Any, p: object) -> None:
        if any(code.is_failure for code in codes):
            failure.append(f"the broker refused the subscriptions: {codes}")
        subscribed.set()

    with (save.open("wb") if save is not None else contextlib.nullcontext()) as out:
        saver = _Saver(out)

        def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            if not msg.topic.startswith((_ALERT_PREFIX, _DEADLETTER_PREFIX, _CASES_PREFIX)):
                return
            try:
                record = orjson.loads(msg.payload)
            except orjson.JSONDecodeError:
                return
            if not isinstance(record, dict):
                return
            with lock:
                try:
                    heard.add(record, msg.topic)
                except ValueError:
                    return
                saver.write(record)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        try:
            client.connect(host, port)
        except OSError as exc:
            raise SourceUnavailable(f"cannot connect to the broker at {host}:{port}: {exc}") \
                from None
        client.loop_start()
        try:
            ready = connected.wait(connect_timeout_s) and not failure and subscribed.wait(
                connect_timeout_s)
            if not ready or failure:
                raise SourceUnavailable(
                    failure[0] if failure else
                    f"the broker at {host}:{port} did not answer in {connect_timeout_s:g} s")
            if on_ready is not None:
                on_ready()
            with contextlib.suppress(KeyboardInterrupt):
                while not (stop is not None and stop.is_set()):
                    left = stop_at() - time.time()
                    if left <= 0:
                        break
                    time.sleep(min(left, 0.1))
        finally:
            client.disconnect()
            client.loop_stop()
    with lock:
        return Messages(list(heard.alerts), list(heard.deadletters), list(heard.cases))


@contextlib.contextmanager
def _http(base: str, path: str, timeout_s: float) -> Iterator[Any]:
    try:
        with urllib.request.urlopen(base + path, timeout=timeout_s) as response:
            yield response
    except urllib.error.HTTPError as exc:
        body = exc.read()[:300].decode(errors="replace").strip()
        raise SourceUnavailable(f"the store at {base} answered {exc.code} to "
                                f"{path.split('?')[0]}: {body}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise SourceUnavailable(f"cannot reach the store at {base}: {reason}") from None


def alerts_from_export(lines: bytes) -> list[dict[str, Any]]:
    """Alert transitions from VictoriaMetrics' /api/v1/export answer for `alert_ts_event`:
    one transition per sample, `ts_raised` its timestamp, `ts_event` its value."""
    out: list[dict[str, Any]] = []
    for n, line in enumerate(lines.splitlines(), 1):
        if not line.strip():
            continue
        try:
            series = orjson.loads(line)
            labels = series["metric"]
            stamps, values = series["timestamps"], series["values"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"store export, line {n}: not a series ({exc})") from None
        missing = {"alert_id", "type", "device", "grade"} - set(labels)
        if missing:
            raise ValueError(f"store export, line {n}: the series lacks {sorted(missing)}")
        for ts, value in zip(stamps, values, strict=True):
            out.append({
                "alert_id": labels["alert_id"], "type": labels["type"],
                "device": labels["device"], "grade": labels["grade"],
                "state": labels.get("state", ""), "gateway": labels.get("gateway", ""),
                "area": labels.get("area", ""), "ts_raised": int(ts),
                "ts_event": int(value)})
    return out


def query_store(url: str, start_ms: int, end_ms: int, timeout_s: float = 30.0) -> list[
        dict[str, Any]]:
    """Alert transitions the core stored with a raise time in [start_ms, end_ms], read from
    VictoriaMetrics at `url` (e.g. http://127.0.0.1:8428). Asks the store to flush first so
    that what it took in just now is searchable (best effort: a store that refuses is still
    read)."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"store URL {url!r} must start with http:// or https://")
    with contextlib.suppress(SourceUnavailable), _http(base, "/internal/force_flush",
                                                        min(timeout_s, 5.0)):
        pass
    query = urllib.parse.urlencode({"match[]": ALERT_MEASUREMENT_FIELD,
                                    "start": f"{start_ms / 1000:.3f}",
                                    "end": f"{end_ms / 1000:.3f}"})
    with _http(base, f"/api/v1/export?{query}", timeout_s) as response:
        body = response.read()
    return [a for a in alerts_from_export(body) if start_ms <= a["ts_raised"] <= end_ms]
