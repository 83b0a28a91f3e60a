"""The stream core: MQTT session -> pipeline -> alerts out -> spool -> PUBACK, a batch at a time;
the spool drains into the store beside it.

One step: decode, dedup, detect and grade a batch of messages; commit the alert transitions with
their messages (the outbox) and publish those at once. Then, on the commit thread, while the next
step is processed: commit the step's lines to the spool (durable, on the core's disk), journal
the admitted readings, and acknowledge the messages to the broker, steps in order. The drain
thread writes the spool to the store and then confirms to each gateway what is stored
(`sensing/v1/core/stored/...`). Nothing here waits for the store: an SOS goes out while the
store is down.

Four threads overlap: the session's reader (socket -> frames), the step loop, the commit thread
and the drain; bounded queues between them hold the broker back when one falls behind.
"""

from __future__ import annotations

import dataclasses
import gc
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson
import structlog

from sensing.alerts.book import AlertBook
from sensing.dedup.journal import Capture, DedupJournal
from sensing.dispatch.channels.base import Channel, LazyChannel
from sensing.dispatch.channels.webhook import WebhookChannel
from sensing.dispatch.deliver import Deliverer
from sensing.dispatch.directory import DirectoryError
from sensing.dispatch.outbox import Outbox
from sensing.dispatch.policy import Routing, load_routing
from sensing.ingest.received import Acks, Received
from sensing.ingest.session import BulkSession, Delivery
from sensing.pipeline import CoreStats, Pipeline, StepOutput, now_ms
from sensing.redact import redact_url
from sensing.settings import CoreSettings
from sensing.stage import Stage
from sensing.store.drain import StoreDrain
from sensing.store.spool import Spool
from sensing.store.writer import Rejected, StoreUnavailable, StoreWriter
from sensing.warmup import warm_up
from sensing.wire import topics
from sensing.wire.confirm_columns import stored_messages_columns
from sensing.wire.errors import Code
from sensing.wire.messages import DeadLetter

log = structlog.get_logger("sensing.core")



@dataclass(frozen=True, slots=True)
class _Commit:
    """What the commit thread makes durable for one step, then acknowledges."""

    messages: Acks
    out: StepOutput


class StreamCore:
    """The pipeline between a persistent MQTT session and the store."""

    def __init__(self, settings: CoreSettings, session: BulkSession | None = None) -> None:
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.pipeline = Pipeline(settings, AlertBook(settings.state_dir / "alerts.sqlite"))
        self.journal = DedupJournal(settings.state_dir, self.pipeline.dedup,
                                    self.pipeline.registry.devices,
                                    registry=self.pipeline.registry, auto_compact=False)
        self.journal.recover()
        self.pipeline.warm_json_lane()
        self.store = StoreWriter(settings.store_url, settings.store_token, settings.store_org,
                                 settings.store_bucket, settings.store_timeout_s)
        self.direct = StoreWriter(settings.store_url, settings.store_token, settings.store_org,
                                  settings.store_bucket, settings.store_timeout_s,
                                  request_bytes=settings.store_request_bytes)
        """the commit thread's own connection: steps go straight to the store while it takes
        them and nothing waits in the spool"""
        self.spool = Spool(settings.state_dir / "spool.sqlite", settings.spool_max_bytes)
        self.session = session or BulkSession.from_settings(settings)
        self.drain = StoreDrain(self.spool, self.store, self._publish_quietly,
                                self._dead_letter_rejected)
        self.stop_event = threading.Event()
        self._last_stats = 0.0
        self._unspooled = False
        """the window admitted readings that never reached the spool (a stop while full)"""
        self._outbox: list[tuple[int, list[Delivery]]] = []
        """outbox entries published and waiting for the broker's PUBACK"""
        # deep enough that a store write stalling for a second (VictoriaMetrics merging) does
        # not hold the step loop, and so the alerts, back: at 100 small steps a second; bounded
        # by what the steps hold (commit_max_bytes)
        self.committer: Stage[_Commit | Capture] = Stage(
            "commit", self._commit, depth=1024, max_bytes=settings.commit_max_bytes)
        self._capture_queued = False
        self.deliverer = Deliverer(Outbox(settings.state_dir / "alerts.sqlite"),
                                   [WebhookChannel(), LazyChannel("apprise", _apprise)])
        """webhook and Apprise notifications, from the outbox the steps fill (the contract's
        MQTT dispatch leaves with each step's alerts)"""
        self._reloaded: Routing | None = None
        self._reloading = threading.Lock()

    @property
    def stats(self) -> CoreStats:
        return self.pipeline.stats

    def run(self) -> None:
        """Process until `stop_event` is set. Input never stops it; only a stop does."""
        log.info("kernels ready", seconds=round(warm_up()[0], 2))
        # what start-up made (modules, kernels, the recovered registry) is never garbage: out
        # of the collector's sight, and full collections rarer, or each one walks every
        # device's name and stalls the step loop (and an alarm) for tens of milliseconds
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 50, 100)
        self.session.start()
        log.info("core running", mqtt=f"{self.settings.mqtt_host}:{self.settings.mqtt_port}",
                 store=redact_url(self.settings.store_url), spooled=self.spool.entries)
        self._announce_undelivered()
        self.drain.start()
        self.committer.start()
        self.deliverer.start()
        try:
            while not self.stop_event.is_set():
                if self.drain.error is not None:
                    raise RuntimeError("the store drain stopped") from self.drain.error
                messages = self.session.receive(self.settings.batch_max_messages,
                                                self.settings.batch_max_wait_s,
                                                self.settings.batch_max_bytes,
                                                self.settings.batch_linger_s)
                self.step(messages)
        finally:
            try:
                self.committer.join()
            finally:
                self._stop_rest()

    def _stop_rest(self) -> None:
        self.deliverer.stop(self.settings.shutdown_grace_s)
        self.drain.stop(self.settings.shutdown_grace_s)
        self._publish_stats(force=True)
        self._settle_outbox()
        self.session.stop()
        self.store.close()
        self.direct.close()
        self.spool.close()
        # a commit thread that failed may have left a step unjournaled: keep the journal
        self.journal.close(compact=not self._unspooled and self.committer.error is None)
        self.pipeline.book.close()
        log.info("core stopped", **self.stats.as_dict())

    def step(self, messages: Received) -> None:
        """Handle one batch of messages; the commit thread makes it durable and acknowledges
        it to the broker."""
        book = self.pipeline.book
        routing, self._reloaded = self._reloaded, None
        if routing is not None:
            self.pipeline.dispatch.reload(routing)
        with book.step():
            out = self.pipeline.process(messages, now_ms())
            outbox_id = book.enqueue(out.announce) if out.announce else None
        if out.announce:
            self.deliverer.wake()  # the step may have queued webhook or Apprise notifications
        # alerts and dispatch leave before anything is stored
        infos = [self.session.publish(topic, payload) for topic, payload in out.announce]
        if outbox_id is not None:
            self._outbox.append((outbox_id, infos))
        for topic, payload in out.publish:
            self.session.publish(topic, payload)
        if len(messages) or out.lines:
            # published already (the session keeps its own copy until the broker's PUBACK):
            # a step waiting for the store keeps only what the commit needs, and weighs it
            kept = dataclasses.replace(out, publish=[], announce=[])
            self.committer.put(_Commit(messages.acks(), kept), _held_bytes(kept))
        if self.journal.due and not self._capture_queued:
            # taken here, between two steps, and written after this step's record: the snapshot
            # holds exactly what the journal before it held
            self._capture_queued = True
            self.committer.put(self.journal.capture())
        self._settle_outbox()
        self._publish_stats()

    def reload_directory(self) -> None:
        """Load the directory file again (SIGHUP) on a thread of its own, a large one takes
        seconds, and hand it to the step loop; a bad file leaves the current one in force."""
        path = self.settings.directory_file
        if path is None:
            log.warning("reload asked, but no directory_file is configured")
            return

        def load() -> None:
            if not self._reloading.acquire(blocking=False):
                return  # a reload is under way: it reads the file as it is now
            try:
                self._reloaded = load_routing(path)
                log.info("directory reloaded", path=str(path))
            except (DirectoryError, OSError) as exc:
                log.error("directory not reloaded; the current one stays", path=str(path),
                          error=str(exc).splitlines()[0][:500])
            finally:
                self._reloading.release()

        threading.Thread(target=load, name="directory-reload", daemon=True).start()

    def _commit(self, items: list[_Commit | Capture]) -> None:
        """On the commit thread, in step order: the steps waiting, spooled and journaled
        together (one fsync each for all of them), then acknowledged; a snapshot captured
        between two of them, written between them."""
        run: list[_Commit] = []
        for item in items:
            if isinstance(item, _Commit):
                run.append(item)
                continue
            self._commit_steps(run)
            run = []
            self._capture_queued = False
            if self._unspooled:
                continue  # it holds readings never spooled: the journal before it stays
            try:
                self.journal.write_snapshot(item)
            except OSError as exc:  # the journal has every record: the snapshot waits
                log.error("dedup snapshot not written; the journal is kept", error=str(exc))
        self._commit_steps(run)

    def _commit_steps(self, steps: list[_Commit]) -> None:
        if not steps or self._unspooled:
            return  # a step before these never reached the spool: none after it is acked
        blocks = [x if isinstance(x, bytes) else x.encode()
                  for c in steps for x in c.out.lines if x]
        handled = [h for c in steps for h in c.out.handled]
        confirms = stored_messages_columns(handled) if handled else []
        stored = self._store_directly(blocks)
        if not stored and not self._durably(
                lambda: self.spool.add(b"\n".join(blocks), confirms, self.stop_event)):
            # stopping with a full spool (or disk): unacknowledged, the broker keeps them; the
            # window admitted them, so it must not be saved as it is
            self._unspooled = True
            return
        dev, epoch, seq = (np.concatenate([c.out.admitted[k] for c in steps]) for k in range(3))
        if not self._durably(lambda: self._journal((dev, epoch, seq))):
            self._unspooled = True
            return  # stopping on a full disk: the spool has them; they come again, once
        for c in steps:
            self.session.ack(c.messages)
        if stored:
            for topic, payload in confirms:
                self._publish_quietly(topic, payload)

    def _store_directly(self, blocks: list[bytes]) -> bool:
        """Write the steps' blocks of lines to the store at once if it is taking writes and
        nothing waits in the spool (whose order the drain keeps): no copy on the core's disk,
        in requests of about `store_request_bytes` (the steps waiting may hold far more than
        one request should). False (the caller spools them all: lines stored twice are one
        sample) at the first outage."""
        if self.spool.entries:
            return False
        try:
            rejected = self.direct.write(blocks, self.stop_event, retry=False)
        except StoreUnavailable:
            log.info("store not taking writes; spooling until it drains")
            return False
        if rejected:
            self._dead_letter_rejected(rejected)
        return True

    def _journal(self, admitted: tuple[np.ndarray, np.ndarray, np.ndarray]) -> bool:
        self.journal.append(*admitted)
        return True

    def _durably(self, write: Callable[[], bool]) -> bool:
        """Run a write to the core's disk until it succeeds (True) or the core stops (False):
        a full disk makes the core wait, with alerts still going out, instead of exiting."""
        delay = 0.5
        while True:
            try:
                return write()
            except (OSError, sqlite3.Error) as exc:
                log.error("cannot write to the core's disk; retrying", error=str(exc)[:200],
                          state_dir=str(self.settings.state_dir), retry_in_s=delay)
                if self.stop_event.wait(delay):
                    return False
                delay = min(delay * 2, 10.0)

    def _announce_undelivered(self) -> None:
        """Publish again what a previous run decided but the broker never confirmed."""
        for outbox_id, messages in self.pipeline.book.undelivered():
            infos = [self.session.publish(t, p) for t, p in messages]
            self._outbox.append((outbox_id, infos))
            log.info("outbox published again", messages=len(messages))

    def _settle_outbox(self) -> None:
        if not self._outbox:
            return
        done = [i for i, infos in self._outbox if all(x.delivered for x in infos)]
        if done:
            self.pipeline.book.delivered(done)
            finished = set(done)
            self._outbox = [e for e in self._outbox if e[0] not in finished]

    def _publish_quietly(self, topic: str, payload: bytes) -> None:
        self.session.publish(topic, payload)

    def _dead_letter_rejected(self, rejected: list[Rejected]) -> None:
        """Lines the store refused: a dead letter each, on the topic of their gateway."""
        for r in rejected:
            area, gateway = _line_origin(r.line)
            self.pipeline.stats.deadletters += 1
            letter = DeadLetter.of(f"the store refused the line: {r.reason}",
                                   topics.readings_topic(area, gateway), r.line,
                                   Code.STORE_REJECTED)
            self.session.publish(topics.deadletter_topic(area, gateway), letter.to_json())

    def _publish_stats(self, force: bool = False) -> None:
        t = time.monotonic()
        if not force and t - self._last_stats < self.settings.stats_interval_s:
            return
        self._last_stats = t
        doc = {"ts": now_ms(), **self.stats.as_dict(), "spooled": self.spool.entries,
               "spooled_bytes": self.spool.size_bytes}
        self.session.publish(topics.CORE_STATS_TOPIC, orjson.dumps(doc), retain=True)


def _apprise() -> Channel:
    from sensing.dispatch.channels.apprise_channel import AppriseChannel
    return AppriseChannel()


def _held_bytes(out: StepOutput) -> int:
    """What a step waiting for the commit thread holds: its lines and its readings' columns
    (a step of duplicates has no line, but each of its readings is confirmed)."""
    arrays = [*out.admitted, *(column for _area, _gateway, _names, *columns in out.handled
                               for column in columns)]
    return sum(len(x) for x in out.lines) + sum(np.asarray(a).nbytes for a in arrays)


def _line_origin(line: bytes) -> tuple[str, str]:
    """(area, gateway) from a line's tags; ("_", "store") if it names none valid."""
    head = line.split(b" ", 1)[0].decode(errors="replace")
    tags = dict(t.split("=", 1) for t in head.split(",")[1:] if "=" in t)
    area, gateway = tags.get("area", "_"), tags.get("gateway", "store")
    if not (topics.is_valid_name(area) and topics.is_valid_name(gateway)):
        return "_", "store"
    return area, gateway
