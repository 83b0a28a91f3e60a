"""Local alarms: critical readings acted on at the gateway at once, network or not.

A reading that meets an alarm rule (one value at or beyond a level, e.g. smoke obscuration at
the alarm level, CO at the critical level, an SOS press, a fall's impact, a displaced cover) is
published by the agent straight away instead of waiting for its batch, and handed to the local
actuator hook: a command (a siren, a relay, an SMS modem script) started with the alarm as JSON
on its standard input and in `SENSING_ALARM_*` environment variables. The hook does not need
the broker. The core still decides the graded alert from the full stream; these rules only
decide what must not wait for it.

The same (device, alarm type) is logged and starts the hook at most once per `repeat_s` while it
lasts; every reading that meets a rule is still published at once and counted.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field

from .drivers import SensorSample

log = structlog.get_logger(__name__)


class AlarmRule(BaseModel):
    """`channel` of devices of `kind` at or beyond `level` (above it, or below with
    `below`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(min_length=1, max_length=64)
    kind: str
    channel: str
    level: float
    below: bool = False

    def met(self, sample: SensorSample) -> float | None:
        """The deciding value when `sample` meets the rule, else None."""
        if sample.kind != self.kind:
            return None
        v = sample.values.get(self.channel)
        if v is None:
            return None
        return v if (v <= self.level if self.below else v >= self.level) else None


DEFAULT_ALARMS: tuple[AlarmRule, ...] = (
    # the core's major smoke level and fixed-temperature heat alarm (UL 521 / EN 54-5 A1R)
    AlarmRule(type="smoke.fire", kind="smoke", channel="obscuration", level=8.0),
    AlarmRule(type="smoke.fire", kind="smoke", channel="temp_c", level=57.0),
    # EN 50291-1: 300 ppm must alarm within 3 minutes; the core's critical level
    AlarmRule(type="smoke.co", kind="smoke", channel="co_ppm", level=300.0),
    AlarmRule(type="wearable.sos", kind="wearable", channel="sos", level=0.5),
    # a fall's impact (the core confirms the fall by the stillness after it)
    AlarmRule(type="wearable.fall", kind="wearable", channel="accel_g", level=2.5),
    # a cover lifted or knocked off its seat: the core's critical tilt
    AlarmRule(type="manhole.displaced", kind="manhole", channel="tilt_deg", level=30.0),
)


class AlarmSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[AlarmRule, ...] = DEFAULT_ALARMS
    command: tuple[str, ...] = ()
    """the actuator hook's argv (no shell); empty: none"""
    repeat_s: float = Field(default=60.0, ge=0)
    hook_timeout_s: float = Field(default=30.0, gt=0)
    """a hook still running after this long is killed (and logged)"""


@dataclass(frozen=True, slots=True)
class LocalAlarm:
    type: str
    device: str
    kind: str
    channel: str
    value: float
    ts: int
    gateway: str
    area: str

    def as_json(self) -> bytes:
        return orjson.dumps({"type": self.type, "device": self.device, "kind": self.kind,
                             "channel": self.channel, "value": self.value, "ts": self.ts,
                             "gateway": self.gateway, "area": self.area})


class LocalAlarms:
    """Finds alarms in samples and runs the hook for them. Used by one thread (the agent's
    sampling thread)."""

    def __init__(self, settings: AlarmSettings, gateway: str, area: str) -> None:
        self.settings = settings
        self.gateway = gateway
        self.area = area
        self._last: dict[tuple[str, str], float] = {}
        self._rules_of: dict[str, list[AlarmRule]] = {}
        for rule in settings.rules:
            self._rules_of.setdefault(rule.kind, []).append(rule)
        self._running: list[tuple[subprocess.Popen[bytes], float, LocalAlarm]] = []
        self.raised = 0
        self.hooks_started = 0
        self.hooks_failed = 0

    def check(self, samples: Sequence[SensorSample]) -> list[LocalAlarm]:
        """The alarms these samples raise (one per device and type, the first rule met), and
        the hook started for each not started within `repeat_s`."""
        found: dict[tuple[str, str], LocalAlarm] = {}
        for s in samples:
            for rule in self._rules_of.get(s.kind, ()):
                value = rule.met(s)
                if value is not None and (s.device, rule.type) not in found:
                    found[(s.device, rule.type)] = LocalAlarm(
                        rule.type, s.device, s.kind, rule.channel, value, s.ts, self.gateway,
                        self.area)
        now = time.monotonic()
        for key, alarm in found.items():
            self.raised += 1
            last = self._last.get(key)
            if last is not None and now - last < self.settings.repeat_s:
                continue  # still the same alarm: counted, not logged or hooked again
            self._last[key] = now
            log.warning("local_alarm", alarm=alarm.type, device=alarm.device,
                        channel=alarm.channel, value=alarm.value)
            self._start_hook(alarm, now)
        return list(found.values())

    def _start_hook(self, alarm: LocalAlarm, now: float) -> None:
        if not self.settings.command:
            return
        env = {**os.environ, "SENSING_ALARM_TYPE": alarm.type,
               "SENSING_ALARM_DEVICE": alarm.device, "SENSING_ALARM_KIND": alarm.kind,
               "SENSING_ALARM_CHANNEL": alarm.channel, "SENSING_ALARM_VALUE": repr(alarm.value),
               "SENSING_ALARM_TS": str(alarm.ts), "SENSING_GATEWAY": alarm.gateway,
               "SENSING_AREA": alarm.area}
        try:
            proc = subprocess.Popen(list(self.settings.command), stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
            assert proc.stdin is not None
            try:
                proc.stdin.write(alarm.as_json() + b"\n")
                proc.stdin.close()
            except BrokenPipeError:
                pass  # a hook that does not read its input
        except OSError as exc:
            self.hooks_failed += 1
            log.error("alarm_hook_failed", alarm=alarm.type, device=alarm.device,
                      command=self.settings.command[0], error=str(exc))
            return
        self.hooks_started += 1
        self._running.append((proc, now, alarm))

    def reap(self) -> None:
        """Collect finished hooks (logging failures) and kill those past their timeout."""
        still: list[tuple[subprocess.Popen[bytes], float, LocalAlarm]] = []
        now = time.monotonic()
        for proc, started, alarm in self._running:
            code = proc.poll()
            if code is None:
                if now - started < self.settings.hook_timeout_s:
                    still.append((proc, started, alarm))
                    continue
                proc.kill()
                code = proc.wait()
                log.error("alarm_hook_timed_out", alarm=alarm.type, device=alarm.device,
                          timeout_s=self.settings.hook_timeout_s)
            if code != 0:
                self.hooks_failed += 1
                log.error("alarm_hook_failed", alarm=alarm.type, device=alarm.device,
                          exit_code=code)
        self._running = still
