"""Incidents, not notification storms: which alerts belong to one case.

An alert joins the open case of its incident key instead of opening a case of its own, so a
fire seen by five detectors under one gateway is dispatched once, with five members.

- a fire or CO seen by several detectors under one gateway: one incident per gateway and type;
- a gateway that went offline and its devices that stopped reporting: one per gateway;
- one resident's alarms (a fall, then an SOS; the smoke detector in their home): one per
  resident, when the directory knows who lives with the device;
- anything else: a case of its own ("").
"""

from __future__ import annotations

GROUPED_BY_GATEWAY = frozenset({"smoke.fire", "smoke.co", "manhole.gas"})
OFFLINE = frozenset({"gateway.offline", "device.offline"})
HOUSEKEEPING = frozenset({"device.fault", "device.battery"})
"""types that concern the device, never a person's emergency: never grouped with a
resident's alarms"""


def incident_key(alert_type: str, gateway: str, resident: str = "") -> str:
    """The key that related alerts share, or "" for an alert that is a case of its own."""
    if alert_type in OFFLINE:
        return f"gateway:{gateway}:offline"
    if resident and alert_type not in HOUSEKEEPING:
        return f"resident:{resident}"
    if alert_type in GROUPED_BY_GATEWAY:
        return f"gateway:{gateway}:{alert_type}"
    return ""
