"""Routes alerts to responder tiers and escalates those nobody acknowledges in time."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from sensing.alerts.book import AlertBook
from sensing.wire.messages import Alert, AlertState, Grade


class DispatchPolicy(BaseModel):
    """Escalation table: who is told first, and how long each tier has to acknowledge."""

    model_config = ConfigDict(frozen=True)

    tiers: tuple[str, ...] = ("grid", "relatives", "volunteers")
    escalate_after_s: dict[Grade, float | None] = {
        Grade.CRITICAL: 60.0,
        Grade.MAJOR: 300.0,
        Grade.MINOR: None,
        Grade.INFO: None,
    }
    dispatch_grades: frozenset[Grade] = frozenset({Grade.CRITICAL, Grade.MAJOR, Grade.MINOR})


@dataclass(slots=True)
class _Route:
    tier: int
    since_ms: int


@dataclass
class Dispatcher:
    book: AlertBook
    policy: DispatchPolicy = field(default_factory=DispatchPolicy)
    _routes: dict[str, _Route] = field(default_factory=dict)

    def on_alert(self, alert: Alert, now: int) -> list[tuple[str, Alert]]:
        """(tier, alert) messages to send for a new transition."""
        if alert.state == AlertState.RESOLVED:
            route = self._routes.pop(alert.alert_id, None)
            if route is None:
                return []
            # Everyone who was told is told it is over.
            return [(self.policy.tiers[t], alert) for t in range(route.tier + 1)]
        if alert.grade not in self.policy.dispatch_grades:
            return []
        route = self._routes.get(alert.alert_id)
        if route is None:
            self._routes[alert.alert_id] = _Route(0, now)
            return [(self.policy.tiers[0], alert.model_copy(update={"tier": self.policy.tiers[0]}))]
        if alert.state == AlertState.UPDATED:
            tier = self.policy.tiers[route.tier]
            return [(tier, alert.model_copy(update={"tier": tier}))]
        return []

    def tick(self, now: int) -> list[tuple[str, Alert]]:
        """Escalate every open, unacknowledged alert whose tier has run out of time."""
        out: list[tuple[str, Alert]] = []
        for alert in self.book.open_alerts:
            route = self._routes.get(alert.alert_id)
            if route is None or AlertBook.is_acknowledged(alert):
                continue
            delay = self.policy.escalate_after_s.get(alert.grade)
            if delay is None or route.tier + 1 >= len(self.policy.tiers):
                continue
            if now - route.since_ms < delay * 1000:
                continue
            route.tier += 1
            route.since_ms = now
            tier = self.policy.tiers[route.tier]
            out.append((tier, self.book.escalate(alert.alert_id, tier, now)))
        return out
