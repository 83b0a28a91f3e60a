"""Detector overrides per kind, area and device, from TOML: the most specific wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensing.detect.checks import CheckView
from sensing.detect.engine import ConditionChange, DetectionEngine, Readings
from sensing.detect.overrides import Overrides, OverridesError, load_overrides
from sensing.detect.rules import DEFAULT_RULES, Rule
from sensing.detect.threshold import RuleView
from sensing.pipeline import Pipeline
from sensing.registry import Registry
from sensing.settings import CoreSettings
from sensing.wire import BatchBuilder
from sensing.wire.messages import Grade

T0 = 1_795_478_819_832
EXAMPLE = """
[kind.smoke.smoke-obscuration]
thresholds = [5.0, 9.0]

[area.shuangqiaozi.manhole-gas]
thresholds = [8.0, 20.0]

[area.shuangqiaozi.smoke-obscuration]
min_counts = [1, 1]

[device."smoke-000123".smoke-co]
durations_s = [1800, 300, 20]

[device."smoke-000123".smoke-obscuration]
thresholds = [6.0, 10.0]
"""


def rule(name: str) -> Rule:
    return next(r for r in DEFAULT_RULES if r.name == name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "detectors.toml"
    path.write_text(text)
    return path


def test_most_specific_wins_key_by_key(tmp_path: Path) -> None:
    ov = Overrides.load(write(tmp_path, EXAMPLE))
    obscuration = rule("smoke-obscuration")
    assert [lv.threshold for lv in ov.levels(obscuration)] == [5.0, 9.0]
    assert [lv.min_count for lv in ov.levels(obscuration)] == [2, 2]
    in_area = ov.levels(obscuration, "shuangqiaozi")
    assert [(lv.threshold, lv.min_count) for lv in in_area] == [(5.0, 1), (9.0, 1)]
    device = ov.levels(obscuration, "shuangqiaozi", "smoke-000123")
    assert [(lv.threshold, lv.min_count) for lv in device] == [(6.0, 1), (10.0, 1)]
    # resets, grades and everything not named stay the rule's
    assert [lv.reset for lv in device] == [lv.reset for lv in obscuration.levels]
    assert [lv.grade for lv in device] == [lv.grade for lv in obscuration.levels]
    co = ov.levels(rule("smoke-co"), "elsewhere", "smoke-000123")
    assert [lv.duration_s for lv in co] == [1800.0, 300.0, 20.0]
    assert ov.levels(rule("manhole-gas"), "elsewhere") == rule("manhole-gas").levels
    assert load_overrides(None) is None


@pytest.mark.parametrize(("text", "message"), [
    ("[kind.smoke.smoke-fog]\nthresholds = [1.0]", "unknown detector 'smoke-fog'"),
    ("[kind.wearable.wearable-fall]\nimpact = 3.0", "unknown key 'impact'"),
    ("[kind.wearable.wearable-fall]\nimpact_g = \"3\"", "impact_g: expected a number"),
    ("[kind.wearable.wearable-fall]\nimpact_g = nan", "impact_g: expected a number"),
    ("[area.a.smoke-co_ppm-impossible]\nintegral = 1", "integral: expected true or false"),
    ("[device.d.wearable-heart_rate-stuck]\nmin_count = 2.5", "min_count: expected an integer"),
    ("[kind.smoke.wearable-fall]\nimpact_g = 3.0", "watches wearable devices"),
    ("[kind.wearable.wearable-fall]\nimpact_g = 1.0",
     r"\[kind.wearable.wearable-fall\]: need 0 < still_low_g"),
    # each alone is fine; together they put the high limit under the low one
    ("[area.a.smoke-co_ppm-impossible]\nlow = 50.0\n"
     "[device.d.smoke-co_ppm-impossible]\nhigh = 40.0",
     r"\[area.a.smoke-co_ppm-impossible\] \+ \[device.d.smoke-co_ppm-impossible\]: "
     "low must not exceed high"),
    ("[kind.smoke.smoke-obscuration]\nlimits = [1.0, 2.0]", "unknown key 'limits'"),
    ("[kind.smoke.smoke-obscuration]\nthresholds = [1.0, 2.0, 3.0]",
     r"\[kind.smoke.smoke-obscuration\] thresholds: expected a list of 2 value"),
    ("[area.a.manhole-gas]\nmin_counts = [1, 0]", "integers >= 1"),
    ("[area.a.manhole-gas]\nmin_counts = [1, 2.5]", "integers >= 1"),
    ("[device.d.manhole-gas]\ndurations_s = [1, -2]", "cannot be negative"),
    ("[device.d.manhole-gas]\nresets = [1, \"x\"]", "finite numbers"),
    ("[kind.manhole.smoke-co]\nthresholds = [1.0, 2.0, 3.0]", "watches smoke devices"),
    ("[kind.toaster.smoke-co]\nthresholds = [1.0, 2.0, 3.0]", "unknown kind"),
    ("[area.\"no spaces\".smoke-co]\nthresholds = [1.0, 2.0, 3.0]", "an area is"),
    ("[thresholds]\nsmoke = 1", r"unknown section \[thresholds\]"),
    ("[kind]\nsmoke = 1", "must hold one table per rule"),
    ("[kind.smoke\nthresholds = 1", "detectors.toml"),
])
def test_mistakes_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(OverridesError, match=message):
        Overrides.load(write(tmp_path, text))


def conditions(engine: DetectionEngine, reg: Registry, area: str,
               rows: list[tuple[str, str, int, dict[str, float]]]) -> list[ConditionChange]:
    b = BatchBuilder()
    for i, (device, kind, ts, values) in enumerate(rows):
        b.add(device, kind, 0, i, ts, values, None)
    batch = b.build()
    dev, chan = reg.intern_batch(batch, "gw", area)
    return engine.process(Readings(dev, batch.ts, batch.battery, batch.value_row, chan,
                                   batch.value))


def run(engine: DetectionEngine, reg: Registry, area: str,
        rows: list[tuple[str, str, int, dict[str, float]]]) -> list[tuple[str, str, Grade | None]]:
    return [(reg.devices.names[c.device], c.type, c.grade)
            for c in conditions(engine, reg, area, rows)]


def test_engine_applies_overrides_when_a_device_is_first_seen(tmp_path: Path) -> None:
    reg = Registry()
    engine = DetectionEngine(reg, overrides=Overrides.load(write(tmp_path, EXAMPLE)))
    gas = [(f"mh-{i}", "manhole", T0 + s * 1000, {"gas_lel": 9.0}) for s in range(2)
           for i in range(2)]
    # 9 % LEL: over the area's 8 % in shuangqiaozi, under the default 10 % elsewhere
    assert run(engine, reg, "shuangqiaozi", gas[:2]) == [
        ("mh-0", "manhole.gas", Grade.MAJOR), ("mh-1", "manhole.gas", Grade.MAJOR)]
    other = [(f"mh-x{i}", "manhole", T0 + i * 1000, {"gas_lel": 9.0}) for i in range(3)]
    assert run(engine, reg, "elsewhere", other) == []
    gas = next(d for d in engine.detectors if d.spec.name == "manhole-gas")
    assert isinstance(gas, RuleView)
    thresholds = {name: [lv.threshold for lv in gas.bank.levels_of(gas.index,
                                                                   reg.devices.index[name])]
                  for name in ("mh-0", "mh-x0")}
    assert thresholds == {"mh-0": [8.0, 20.0], "mh-x0": [10.0, 25.0]}
    # obscuration 5.5 %/m for 60 s: minor under the kind's 5 %/m, nothing under the 6 %/m of
    # smoke-000123's own section
    smoke = [(d, "smoke", T0 + s * 30_000, {"obscuration": 5.5})
             for s in range(3) for d in ("smoke-000123", "smoke-9")]
    assert run(engine, reg, "shuangqiaozi", smoke) == [("smoke-9", "smoke.fire", Grade.MINOR)]


def test_pipeline_reads_the_detectors_file(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    pipe = Pipeline(CoreSettings(detectors_file=path, state_dir=tmp_path))
    assert pipe.engine.overrides and "shuangqiaozi" in pipe.engine.overrides.area
    with pytest.raises(OverridesError, match="unknown key"):
        Pipeline(CoreSettings(detectors_file=write(tmp_path, "[kind.smoke.smoke-co]\nx = 1"),
                              state_dir=tmp_path))


CHECKS = """
[kind.wearable.wearable-inactivity]
limit_s = 3600

[device."wb-slow".wearable-inactivity]
limit_s = 7200

[area.ward.wearable-fall]
impact_g = 4.0

[device."smoke-7".smoke-obscuration]
thresholds = [3.0, 6.0]
"""


def reasons(engine: DetectionEngine, reg: Registry, area: str,
            rows: list[tuple[str, str, int, dict[str, float]]]) -> dict[tuple[str, str], str]:
    return {(reg.devices.names[c.device], c.type): c.reason
            for c in conditions(engine, reg, area, rows) if c.grade}


def test_checks_take_overrides_and_reasons_quote_the_devices_own_numbers(tmp_path: Path
                                                                         ) -> None:
    reg = Registry()
    engine = DetectionEngine(reg, overrides=Overrides.load(write(tmp_path, CHECKS)))
    # no steps from 08:06 local for 80 min: over the kind's 1 h, under wb-slow's own 2 h
    still = [(d, "wearable", T0 + m * 60_000, {"steps": 0.0, "accel_g": 1.0})
             for m in range(0, 81, 10) for d in ("wb-1", "wb-slow")]
    got = reasons(engine, reg, "home", still)
    assert list(got) == [("wb-1", "wearable.inactivity")]
    assert "(limit 1 h)" in got[("wb-1", "wearable.inactivity")]
    # an impact of 3 g then lying still: a fall at home (default 2.5 g), not in the ward (4 g)
    fall = [(d, "wearable", T0 + 90 * 60_000 + s * 1000, {"accel_g": 3.0 if s == 0 else 1.0})
            for s in range(12) for d in ("wb-2", "wb-3")]
    assert list(reasons(engine, reg, "home", [r for r in fall if r[0] == "wb-2"])) == [
        ("wb-2", "wearable.fall")]
    assert reasons(engine, reg, "ward", [r for r in fall if r[0] == "wb-3"]) == {}
    fall_check = next(d for d in engine.detectors if d.spec.name == "wearable-fall")
    assert isinstance(fall_check, CheckView)
    assert fall_check.bank.params_of(fall_check.index, reg.devices.index["wb-3"]).impact_g == 4.0
    # a threshold rule's reason quotes the device's own threshold too
    smoke = [("smoke-7", "smoke", T0 + s * 10_000, {"obscuration": 7.0}) for s in range(4)]
    why = reasons(engine, reg, "home", smoke)[("smoke-7", "smoke.fire")]
    assert "over 6 %/m" in why


NEW_CHECK_KEYS = """
[kind.manhole.manhole-gas_lel-stuck]
min_duration_s = 600
min_count = 10

[device."m-quiet".manhole-gas_lel-stuck]
rest_low = 0.0
rest_high = 1.0

[kind.wearable.wearable-fall]
move_s = 30.0
cancel_steps = 50
"""


def test_the_stuck_and_fall_parameters_of_issue_13_take_overrides(tmp_path: Path) -> None:
    reg = Registry()
    engine = DetectionEngine(reg, overrides=Overrides.load(write(tmp_path, NEW_CHECK_KEYS)))
    # gas with noise for 20 min, then frozen at 0.5 % LEL for 15 min, a reading a minute: stuck
    # after the kind's 10 min, but not for m-quiet, for which 0-1 % LEL is at rest
    gas = [(d, "manhole", T0 + m * 60_000,
            {"gas_lel": 0.5 if m >= 20 else 0.2 + 0.1 * (m % 4)})
           for m in range(35) for d in ("m-1", "m-quiet")]
    got = run(engine, reg, "street", gas)
    assert got == [("m-1", "device.fault", Grade.MINOR)]
    # a knock, then 20 s of walking with 40 steps, then rest: the kind walks off neither the
    # steps (50 needed) nor the movement (30 s needed): a fall
    knock = [("wb-9", "wearable", T0 + s * 1000,
              {"accel_g": 3.0 if s == 0 else 1.35 if s <= 20 else 1.0,
               "steps": 2.0 if 1 <= s <= 20 else 0.0}) for s in range(45)]
    assert run(engine, reg, "home", knock) == [("wb-9", "wearable.fall", Grade.CRITICAL)]
    with pytest.raises(OverridesError, match="cancel_steps"):
        Overrides.parse({"kind": {"wearable": {"wearable-fall": {"cancel_steps": 0}}}})
    with pytest.raises(OverridesError, match="min_noise"):
        Overrides.parse({"kind": {"smoke": {"smoke-co_ppm-stuck": {"min_noise": 2.0}}}})


def test_the_readme_example_loads(tmp_path: Path) -> None:
    """The detectors file the README shows is one the core accepts."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    head = "[kind.smoke.smoke-obscuration]"
    example = head + readme.split(head, 1)[1].split("```", 1)[0]
    path = tmp_path / "detectors.toml"
    path.write_text(example)
    overrides = Overrides.load(path)
    assert overrides
    assert "device-offline" in example and "wearable-fall" in example
