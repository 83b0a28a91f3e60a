"""Local alarm rules and the actuator hook, on their own."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson

from sensing_edge import AlarmRule, AlarmSettings, SensorSample
from sensing_edge.alarms import LocalAlarms


def sample(device: str, kind: str, **values: float) -> SensorSample:
    return SensorSample(device, kind, 1_795_478_900_000, values, 0.9)


def test_default_rules_find_the_critical_readings_only() -> None:
    alarms = LocalAlarms(AlarmSettings(), "gw-1", "a-1")
    found = alarms.check([
        sample("s-1", "smoke", obscuration=0.3, temp_c=22.0, co_ppm=3.0),   # cooking: nothing
        sample("s-2", "smoke", obscuration=9.0, temp_c=60.0, co_ppm=1.0),   # fire, two rules
        sample("s-3", "smoke", obscuration=0.1, temp_c=22.0, co_ppm=320.0),
        sample("w-1", "wearable", heart_rate=80.0, accel_g=1.1, sos=0.0),
        sample("w-2", "wearable", heart_rate=80.0, accel_g=3.1, sos=1.0),
        sample("m-1", "manhole", tilt_deg=12.0, gas_lel=1.0),              # bumped, not off
        sample("m-2", "manhole", tilt_deg=45.0),
    ])
    assert sorted((a.device, a.type) for a in found) == [
        ("m-2", "manhole.displaced"), ("s-2", "smoke.fire"), ("s-3", "smoke.co"),
        ("w-2", "wearable.fall"), ("w-2", "wearable.sos")]
    fire = next(a for a in found if a.device == "s-2")
    assert (fire.channel, fire.value) == ("obscuration", 9.0)  # the first rule met decides


def test_a_below_rule_and_the_hook_once_per_repeat_window(tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    command = (sys.executable, "-c",
               "import os, sys; open(sys.argv[1], 'a').write(os.environ['SENSING_ALARM_DEVICE']"
               " + ' ' + sys.stdin.read())", str(log))
    rule = AlarmRule(type="manhole.overflow", kind="manhole", channel="water_m", level=0.2,
                     below=True)
    alarms = LocalAlarms(AlarmSettings(rules=(rule,), command=command, repeat_s=60), "gw", "a")
    assert alarms.check([sample("m-1", "manhole", water_m=0.5)]) == []
    for _ in range(3):  # the same alarm three polls in a row: one hook
        assert len(alarms.check([sample("m-1", "manhole", water_m=0.1)])) == 1
    deadline = time.monotonic() + 10
    while alarms.hooks_started and not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    alarms.reap()
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("m-1 ")
    doc = orjson.loads(lines[0].split(" ", 1)[1])
    assert doc == {"type": "manhole.overflow", "device": "m-1", "kind": "manhole",
                   "channel": "water_m", "value": 0.1, "ts": 1_795_478_900_000,
                   "gateway": "gw", "area": "a"}
    assert (alarms.raised, alarms.hooks_started, alarms.hooks_failed) == (3, 1, 0)


def test_a_failing_or_missing_hook_is_counted_not_raised(tmp_path: Path) -> None:
    rule = AlarmRule(type="wearable.sos", kind="wearable", channel="sos", level=0.5)
    failing = LocalAlarms(AlarmSettings(rules=(rule,), command=(sys.executable, "-c",
                                                                 "raise SystemExit(3)")), "g", "a")
    failing.check([sample("w-1", "wearable", sos=1.0)])
    deadline = time.monotonic() + 10
    while failing.hooks_failed == 0 and time.monotonic() < deadline:
        failing.reap()
        time.sleep(0.05)
    assert failing.hooks_failed == 1
    missing = LocalAlarms(AlarmSettings(rules=(rule,), command=(str(tmp_path / "no-such"),)),
                          "g", "a")
    assert len(missing.check([sample("w-1", "wearable", sos=1.0)])) == 1
    assert (missing.hooks_started, missing.hooks_failed) == (0, 1)
