"""InfluxDB line protocol for readings and alert transitions, formatted a batch at a time.

Readings: measurement `reading`, tags area, gateway, device, kind; one float field per channel,
`battery`, and the integer fields `seq` and `epoch` (a channel whose name collides with these is
stored as `ch_<name>`); timestamp in ms. In VictoriaMetrics each field becomes a metric
`reading_<field>`, so counting samples of `reading_seq` counts stored readings.
"""

from __future__ import annotations

import numpy as np

from sensing.registry import Registry
from sensing.wire.messages import Alert

RESERVED_FIELDS = frozenset({"seq", "epoch", "battery"})
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return text.translate(_TAG_ESCAPES)


class LineFormatter:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._prefix: dict[int, tuple[int, int, str]] = {}
        self._field: list[str] = []

    def _device_prefix(self, device: int) -> str:
        gw = int(self.registry.device_gateway[device])
        area = int(self.registry.device_area[device])
        cached = self._prefix.get(device)
        if cached is not None and cached[0] == gw and cached[1] == area:
            return cached[2]
        name, kind, gateway, area_name = self.registry.describe(device)
        prefix = (
            f"reading,area={escape_key(area_name)},gateway={escape_key(gateway)},"
            f"device={escape_key(name)},kind={escape_key(kind)} "
        )
        self._prefix[device] = (gw, area, prefix)
        return prefix

    def _field_key(self, channel: int) -> str:
        names = self.registry.channels.names
        while len(self._field) < len(names):
            name = names[len(self._field)]
            self._field.append(escape_key(f"ch_{name}" if name in RESERVED_FIELDS else name))
        return self._field[channel]

    def readings(
        self,
        dev: np.ndarray,
        epoch: np.ndarray,
        seq: np.ndarray,
        ts: np.ndarray,
        battery: np.ndarray,
        value_row: np.ndarray,
        value_channel: np.ndarray,
        value: np.ndarray,
    ) -> list[str]:
        n = dev.shape[0]
        order = np.argsort(value_row, kind="stable")
        bounds = np.searchsorted(value_row[order], np.arange(n + 1))
        channels = value_channel[order].tolist()
        values = value[order].tolist()
        keys = [self._field_key(c) for c in range(len(self.registry.channels))]
        lines: list[str] = []
        for i, (d, e, s, t, b) in enumerate(
            zip(dev.tolist(), epoch.tolist(), seq.tolist(), ts.tolist(), battery.tolist(),
                strict=True)
        ):
            lo, hi = bounds[i], bounds[i + 1]
            fields = [f"{keys[channels[j]]}={values[j]!r}" for j in range(lo, hi)]
            if b == b:  # not NaN
                fields.append(f"battery={b!r}")
            fields.append(f"seq={s}i,epoch={e}i")
            lines.append(f"{self._device_prefix(d)}{','.join(fields)} {t}")
        return lines

    @staticmethod
    def alert(alert: Alert) -> str:
        value = "" if alert.value is None else f"value={float(alert.value)!r},"
        return (
            f"alert,area={escape_key(alert.area)},gateway={escape_key(alert.gateway)},"
            f"device={escape_key(alert.device)},type={escape_key(alert.type)},"
            f"grade={alert.grade.value},state={alert.state.value},alert_id={alert.alert_id} "
            f"{value}ts_event={alert.ts_event}i {alert.ts_raised}"
        )
