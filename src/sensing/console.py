"""Rendering alerts for people: one coloured line per transition."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text

from sensing.wire.messages import Alert, Grade

GRADE_STYLE: dict[Grade, str] = {
    Grade.CRITICAL: "bold white on red",
    Grade.MAJOR: "bold black on dark_orange",
    Grade.MINOR: "black on yellow",
    Grade.INFO: "white on blue",
}


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def alert_line(alert: Alert) -> Text:
    line = Text()
    line.append(_clock(alert.ts_raised) + " ", style="dim")
    line.append(f" {alert.grade.value.upper():8} ", style=GRADE_STYLE[alert.grade])
    line.append(f" {alert.state.value:12} ", style="bold" if alert.state == "raised" else "")
    line.append(f"{alert.type:20} ", style="cyan")
    line.append(f"{alert.area}/{alert.gateway}/{alert.device} ")
    line.append(alert.reason, style="dim")
    line.append(f"  [{alert.alert_id[:8]}]", style="dim")
    return line
