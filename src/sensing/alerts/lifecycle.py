"""Between detector verdicts and the alert book: hold times, flapping and fire confirmation.

- An alert resolves only after its condition has stayed clear for `hold_s` of event time: the
  device's own (the event time of its newest reading the detectors were given) for alerts
  its readings raise, so that a gateway's watermark that has run ahead of a device (a
  backlog delivered late, in order) cannot resolve them between two of its readings; the
  gateway's watermark for the others (device and gateway offline).
- A condition that toggles `flap_high` times within `flap_window_s` is *flapping*: the alert
  stays open, one `updated` transition reports it, and further raises and clears are held back
  until the toggles in the window drop to `flap_low` (Nagios/Alertmanager practice).
- A smoke detector alone makes a fire at most `major`; two or more in alarm under the same
  gateway or area within `confirm_window_s` make all of them `critical` ("confirmed").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from sensing.alerts.book import AlertBook
from sensing.wire.messages import Alert, Grade

FIRE = "smoke.fire"


class LifecyclePolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    hold_s: float = 30.0
    flap_window_s: float = 1800.0
    flap_high: int = 6
    flap_low: int = 2
    confirm_window_s: float = 300.0


@dataclass(slots=True)
class _Track:
    gateway: str
    area: str
    condition: Grade | None = None
    clear_since: int | None = None
    toggles: deque[int] = field(default_factory=deque)
    flapping: bool = False
    value: float | None = None
    own_clock: bool = False
    """its timers run on the device's event time, not on its gateway's watermark"""


class Lifecycle:
    def __init__(self, book: AlertBook, policy: LifecyclePolicy | None = None,
                 latching: frozenset[str] = frozenset()) -> None:
        self.book = book
        self.policy = policy or LifecyclePolicy()
        self.latching = latching
        self._tracks: dict[tuple[str, str], _Track] = {}

    def condition(self, *, device: str, alert_type: str, grade: Grade | None, gateway: str,
                  area: str, ts_event: int, ts: int, value: float | None, reason: str,
                  now: int, own_clock: bool = False) -> list[Alert]:
        """A detector's verdict for (device, type) changed at event time `ts`. With
        `own_clock` (a verdict on the device's readings), the hold and flap timers of the pair
        run on the device's own event time (`tick`'s `device_time`)."""
        # hold and flap timers run on gateway watermarks, which never pass the core's clock:
        # a reading stamped ahead of it must not start a hold that the watermark cannot reach
        ts = min(ts, now)
        key = (device, alert_type)
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(gateway, area)
        track.gateway, track.area, track.value = gateway, area, value
        track.own_clock = own_clock
        if (track.condition is None) != (grade is None):
            track.toggles.append(ts)
            self._prune(track, ts)
        track.condition = grade
        out: list[Alert] = []
        if not track.flapping and len(track.toggles) >= self.policy.flap_high:
            track.flapping = True
            out.extend(self._report_flapping(device, alert_type, track, ts_event, now))
        if track.flapping:
            return out
        if grade is None:
            if self.book.open_for(device, alert_type) is not None:
                track.clear_since = ts
            return out
        track.clear_since = None
        if alert_type == FIRE:
            return out + self._fire(device, grade, track, ts_event, reason, now)
        alert = self.book.condition(device=device, alert_type=alert_type, grade=grade,
                                    gateway=gateway, area=area, ts_event=ts_event, value=value,
                                    reason=reason, now=now)
        return out + ([alert] if alert else [])

    def resolve_now(self, device: str, alert_type: str) -> None:
        """A person resolved the alert: forget its history."""
        self._tracks.pop((device, alert_type), None)

    def tick(self, watermark: Callable[[str], int], now: int,
             device_time: Callable[[str], int] | None = None) -> list[Alert]:
        """Resolve what has stayed clear for the hold time; end flapping that has calmed.
        Time is `watermark(gateway)`, or `device_time(device)` (no later than `now`) for the
        pairs whose verdicts came with `own_clock`."""
        out: list[Alert] = []
        hold = int(self.policy.hold_s * 1000)
        for (device, alert_type), track in list(self._tracks.items()):
            mark = (min(device_time(device), now) if track.own_clock and device_time
                    else watermark(track.gateway))
            if track.flapping:
                self._prune(track, mark)
                if len(track.toggles) > self.policy.flap_low:
                    continue
                track.flapping = False
                alert = self._note(device, alert_type, "stopped flapping", now)
                out.extend([alert] if alert else [])
                if track.condition is None:
                    track.clear_since = mark
            if track.condition is None and track.clear_since is not None:
                if alert_type in self.latching or mark - track.clear_since < hold:
                    continue
                alert = self.book.condition(
                    device=device, alert_type=alert_type, grade=None, gateway=track.gateway,
                    area=track.area, ts_event=track.clear_since, value=track.value,
                    reason=f"clear for {self.policy.hold_s:g} s", now=now)
                out.extend([alert] if alert else [])
                track.clear_since = None
            if track.condition is None and not track.toggles and not track.flapping:
                del self._tracks[(device, alert_type)]
        return out

    def _prune(self, track: _Track, ts: int) -> None:
        horizon = ts - int(self.policy.flap_window_s * 1000)
        while track.toggles and track.toggles[0] < horizon:
            track.toggles.popleft()

    def _note(self, device: str, alert_type: str, note: str, now: int) -> Alert | None:
        current = self.book.open_for(device, alert_type)
        if current is None:
            return None
        return self.book.update(current.alert_id, reason=note, now=now)

    def _report_flapping(self, device: str, alert_type: str, track: _Track, ts_event: int,
                         now: int) -> list[Alert]:
        note = (f"flapping: {len(track.toggles)} changes in "
                f"{self.policy.flap_window_s / 60:g} min; raises and clears held back")
        if self.book.open_for(device, alert_type) is None:
            alert = self.book.condition(device=device, alert_type=alert_type,
                                        grade=track.condition or Grade.MINOR,
                                        gateway=track.gateway, area=track.area,
                                        ts_event=ts_event, value=track.value, reason=note,
                                        now=now)
            return [alert] if alert else []
        alert = self._note(device, alert_type, note, now)
        return [alert] if alert else []

    def _fire(self, device: str, grade: Grade, track: _Track, ts_event: int, reason: str,
              now: int) -> list[Alert]:
        window = int(self.policy.confirm_window_s * 1000)
        peers = [a for a in self.book.open_alerts
                 if a.type == FIRE and a.device != device
                 and (a.gateway == track.gateway or a.area == track.area)
                 and a.grade.rank >= Grade.MAJOR.rank and abs(a.ts_event - ts_event) <= window]
        if grade.rank < Grade.MAJOR.rank or not peers:
            grade = grade if grade.rank <= Grade.MAJOR.rank else Grade.MAJOR
            alert = self.book.condition(device=device, alert_type=FIRE, grade=grade,
                                        gateway=track.gateway, area=track.area,
                                        ts_event=ts_event, value=track.value, reason=reason,
                                        now=now)
            return [alert] if alert else []
        confirmed = f"confirmed: {len(peers) + 1} smoke detectors in alarm in {track.area}"
        out = []
        alert = self.book.condition(device=device, alert_type=FIRE, grade=Grade.CRITICAL,
                                    gateway=track.gateway, area=track.area, ts_event=ts_event,
                                    value=track.value, reason=f"{reason}; {confirmed}", now=now)
        out.extend([alert] if alert else [])
        for peer in peers:
            if peer.grade != Grade.CRITICAL:
                out.append(self.book.update(peer.alert_id, reason=confirmed, now=now,
                                            grade=Grade.CRITICAL))
        return out
