"""Threshold overrides per kind, area and device, from TOML: the most specific wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensing.detect.engine import DetectionEngine, Readings
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
    ("[kind.smoke.smoke-fog]\nthresholds = [1.0]", "unknown rule 'smoke-fog'"),
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


def run(engine: DetectionEngine, reg: Registry, area: str,
        rows: list[tuple[str, str, int, dict[str, float]]]) -> list[tuple[str, str, Grade | None]]:
    b = BatchBuilder()
    for i, (device, kind, ts, values) in enumerate(rows):
        b.add(device, kind, 0, i, ts, values, None)
    batch = b.build()
    dev, chan = reg.intern_batch(batch, "gw", area)
    out = engine.process(Readings(dev, batch.ts, batch.battery, batch.value_row, chan,
                                  batch.value))
    return [(reg.devices.names[c.device], c.type, c.grade) for c in out]


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
