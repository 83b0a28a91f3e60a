"""The stream core: MQTT session -> pipeline -> store -> publish -> PUBACK, a batch at a time."""

from __future__ import annotations

import threading
import time

import orjson
import structlog

from sensing.alerts.book import AlertBook
from sensing.dedup.journal import DedupJournal
from sensing.ingest.mqtt import CoreSession, Incoming
from sensing.pipeline import CoreStats, Pipeline, now_ms
from sensing.settings import CoreSettings
from sensing.store.writer import StoreWriter
from sensing.warmup import warm_up
from sensing.wire import topics

log = structlog.get_logger("sensing.core")


class StreamCore:
    """The pipeline between a persistent MQTT session and the store."""

    def __init__(self, settings: CoreSettings, session: CoreSession | None = None) -> None:
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.pipeline = Pipeline(settings, AlertBook(settings.state_dir / "alerts.sqlite"))
        self.journal = DedupJournal(settings.state_dir, self.pipeline.dedup,
                                    self.pipeline.registry.devices)
        self.journal.recover()
        self.store = StoreWriter(settings.store_url, settings.store_token, settings.store_org,
                                 settings.store_bucket, settings.store_timeout_s)
        self.session = session or CoreSession(
            settings.mqtt_host, settings.mqtt_port, settings.mqtt_client_id,
            settings.mqtt_username, settings.mqtt_password)
        self.stop_event = threading.Event()
        self._last_stats = 0.0

    @property
    def stats(self) -> CoreStats:
        return self.pipeline.stats

    def run(self) -> None:
        """Process until `stop_event` is set. Input never stops it; only a stop does."""
        log.info("kernels ready", seconds=round(warm_up()[0], 2))
        self.session.start()
        log.info("core running", mqtt=f"{self.settings.mqtt_host}:{self.settings.mqtt_port}",
                 store=self.settings.store_url)
        try:
            while not self.stop_event.is_set():
                messages = self.session.receive(self.settings.batch_max_messages,
                                                self.settings.batch_max_wait_s)
                self.step(messages)
        finally:
            self._publish_stats(force=True)
            self.session.stop()
            self.store.close()
            self.journal.close()
            self.pipeline.book.close()
            log.info("core stopped", **self.stats.as_dict())

    def step(self, messages: list[Incoming]) -> None:
        """Handle one batch of messages end to end, then acknowledge them to the broker."""
        out = self.pipeline.process(messages, now_ms())
        # Raises StoreUnavailable only when stopping; the messages then stay unacknowledged.
        self.store.write(out.lines, self.stop_event)
        self.journal.append(*out.admitted)
        for topic, payload in out.publish:
            self.session.publish(topic, payload)
        self.session.ack(messages)
        self._publish_stats()

    def _publish_stats(self, force: bool = False) -> None:
        t = time.monotonic()
        if not force and t - self._last_stats < self.settings.stats_interval_s:
            return
        self._last_stats = t
        doc = {"ts": now_ms(), **self.stats.as_dict()}
        self.session.publish(topics.CORE_STATS_TOPIC, orjson.dumps(doc), retain=True)

