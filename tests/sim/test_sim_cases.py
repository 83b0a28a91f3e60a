"""The field's cases (issue 13): late readings inside incidents, a stuck sensor on every
channel, impossible values on channels with alarm rules, a knock on the wrist, slow cadences
with batching gateways, device reboots; and how the score reads them."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sensing_sim.cases import BANG_LEVEL_G, Cadence, LateReadings, Reboot, WristBang
from sensing_sim.fleet import Fleet, FleetSpec
from sensing_sim.incidents import CHANNEL_FORMS, FORMS, Incident, channels_of, kinds_of
from sensing_sim.scenario import Scenario, load_scenario
from sensing_sim.score import Alert, score
from sensing_sim.transport import READINGS, FleetStream, Message
from tests.sim.test_sim_transport import readings_of

START = 1_795_478_400_000
SCENARIOS = Path(__file__).resolve().parents[2] / "simulators" / "scenarios"
STUCK_CHANNELS = {("manhole", "tilt_deg"), ("manhole", "water_m"), ("manhole", "gas_lel"),
                  ("smoke", "obscuration"), ("smoke", "temp_c"), ("smoke", "co_ppm"),
                  ("wearable", "spo2"), ("wearable", "heart_rate")}


def delivered(fleet: Fleet, seconds: float) -> list[tuple[int, Message]]:
    stream = FleetStream(fleet, seconds, start_ms=START)
    return [(now, m) for now, arrived in stream.steps() for m in arrived]


def readings(got: list[tuple[int, Message]], device: str) -> list[tuple[int, int, int, int]]:
    """(arrival ms, epoch, seq, ts) of the device's readings, in arrival order."""
    return [(m.at_ms, e, s, t) for _, m in got if m.what == READINGS
            for d, e, s, t in readings_of(m) if d == device]


# -- stuck and impossible on every channel ------------------------------------------------------


def test_every_channel_where_freezing_is_a_fault_can_be_stuck() -> None:
    assert set(channels_of("device.fault", "stuck")) == STUCK_CHANNELS
    for kind, form in FORMS[("device.fault", "stuck")].items():  # the defaults are among them
        assert CHANNEL_FORMS[("device.fault", "stuck")][(kind, form.channel)] is form
    for (kind, channel), form in CHANNEL_FORMS[("device.fault", "stuck")].items():
        assert form.channel == channel and form.length_s >= 45 * 60
        assert kinds_of("device.fault", "stuck", channel) == (kind,)


@pytest.mark.parametrize(("kind", "channel"), sorted(STUCK_CHANNELS))
def test_a_stuck_sensor_shows_noise_then_one_value(kind: str, channel: str) -> None:
    fleet = Fleet(FleetSpec(n_gateways=1, n_devices=30, interval_s=10.0, seed=3))
    device = next(d for d in fleet.devices if d.kind == kind and not any(
        getattr(fleet.signal(d), floor, False) for floor in ("whole_ppm", "deadband")))
    inc = fleet.add_incident(Incident.of("device.fault", device.id, device.gateway, device.area,
                                         600.0, 600.0 + 45 * 60, variant="stuck",
                                         channel=channel))
    assert inc.channel == channel and inc.device_kind == kind
    driver = fleet.driver(device.gateway, START)
    values: list[tuple[float, float]] = []
    for t in range(0, 600 + 45 * 60 + 600):  # polled every second: sampled within one
        for s in driver.poll(START + t * 1000):
            if s.device == device.id:
                values.append((t, s.values[channel]))
    before = {v for t, v in values if t < 600}
    during = {v for t, v in values if 601 <= t < 600 + 45 * 60}
    assert len(before) > 3, "noise before it froze"
    assert during == {inc.level}
    form = CHANNEL_FORMS[("device.fault", "stuck")][(kind, channel)]
    assert form.levels[0] <= inc.level <= form.levels[1]


def test_impossible_values_can_land_on_channels_with_alarm_rules() -> None:
    on = CHANNEL_FORMS[("device.fault", "impossible")]
    assert on[("smoke", "obscuration")].levels == (400.0, 400.0)
    assert {("manhole", "gas_lel"), ("wearable", "heart_rate"), ("smoke", "temp_c")} <= set(on)
    inc = Incident.of("device.fault", "smoke-000001", "gw-01", "a", 10.0,
                      variant="impossible", channel="obscuration")
    assert inc.device_kind == "smoke" and inc.level == 400.0 and inc.channel == "obscuration"


def test_a_channel_an_incident_cannot_be_put_on_is_refused_naming_the_channels() -> None:
    with pytest.raises(ValueError, match="one of co_ppm, gas_lel"):
        Incident.of("device.fault", "x", "gw-01", "a", 0.0, variant="stuck", channel="sos")
    with pytest.raises(ValueError, match="no channel to choose"):
        Incident.of("smoke.fire", "x", "gw-01", "a", 0.0, channel="obscuration")
    with pytest.raises(ValueError, match="cannot happen on a manhole"):
        Incident.of("device.fault", "x", "gw-01", "a", 0.0, variant="stuck",
                    channel="spo2", kind="manhole")


# -- a knock on the wrist ------------------------------------------------------------------------


def test_a_wrist_bang_is_an_impact_then_walking_then_rest() -> None:
    bang = WristBang.of("wearable-000001", "gw-01", "a", 100.0)
    assert bang.level == BANG_LEVEL_G and bang.end_s == 100.0 + 10 + 40 + 120
    quiet = {"accel_g": 1.02, "steps": 0.0, "heart_rate": 70.0}
    assert bang.apply(90.0, quiet, 0.5, 85.0) == (quiet, 0.5)
    first, _ = bang.apply(104.0, quiet, 0.5, 98.0)
    assert first["accel_g"] == 3.0
    walking = [bang.apply(t, quiet, 0.5, t - 5.0)[0] for t in range(115, 150, 5)]
    assert all(v["steps"] >= 8 and 1.25 <= v["accel_g"] <= 1.45 for v in walking)
    rest = [bang.apply(t, quiet, 0.5, t - 5.0)[0] for t in range(155, 270, 5)]
    assert all(v["steps"] == 0 and 1.0 <= v["accel_g"] <= 1.02 for v in rest)
    # a slow band's first reading after the knock still carries its peak
    assert bang.apply(130.0, quiet, 0.5, 70.0)[0]["accel_g"] == 3.0


def test_a_nuisance_changes_the_readings_of_its_device_and_labels_nothing() -> None:
    fleet = Fleet(FleetSpec(n_gateways=1, n_devices=20, interval_s=5.0, seed=4))
    band = next(d for d in fleet.devices if d.kind == "wearable")
    fleet.add_nuisance(WristBang.of(band.id, band.gateway, band.area, 30.0))
    assert fleet.incidents == () and band.id in fleet.busy_devices()
    driver = fleet.driver(band.gateway, START)
    got = [s for t in range(0, 240) for s in driver.poll(START + t * 1000) if s.device == band.id]
    assert max(s.values["accel_g"] for s in got) == BANG_LEVEL_G
    with pytest.raises(ValueError, match="not wearable"):
        smoke = next(d for d in fleet.devices if d.kind == "smoke")
        fleet.add_nuisance(WristBang.of(smoke.id, smoke.gateway, smoke.area, 30.0))


# -- cadences, batching, reboots -----------------------------------------------------------------


def slow_fleet(batch_s: float = 0.0) -> Fleet:
    return Fleet(FleetSpec(n_gateways=2, n_devices=20, interval_s=5.0, seed=5,
                           cadences=(Cadence("gw-02", (45.0, 60.0), batch_s),)))


def test_a_gateway_cadence_gives_its_devices_their_own_45_to_60_s_from_the_first_reading(
) -> None:
    fleet, again = slow_fleet(), slow_fleet()
    assert fleet.devices == again.devices
    slow = [d for d in fleet.devices if d.gateway == "gw-02"]
    assert all(45.0 <= d.interval_s <= 60.0 and 0 <= d.phase_s < d.interval_s for d in slow)
    assert len({d.interval_s for d in slow}) > 3
    assert all(d.interval_s == 5.0 for d in fleet.devices if d.gateway == "gw-01")
    # the fast gateway's devices are those of a fleet without cadences
    plain = Fleet(FleetSpec(n_gateways=2, n_devices=20, interval_s=5.0, seed=5))
    assert [d for d in plain.devices if d.gateway == "gw-01"] == [
        d for d in fleet.devices if d.gateway == "gw-01"]
    got = delivered(fleet, 300)
    for d in slow:
        ts = [t for _, _, _, t in readings(got, d.id)]
        assert ts[0] - START <= d.interval_s * 1000 + 1000
        gaps = [(b - a) / 1000 for a, b in itertools.pairwise(ts)]
        # stamped at the second-long poll that takes them
        assert all(abs(g - d.interval_s) < 1.0 for g in gaps), (d, gaps)


def test_a_batching_gateway_forwards_every_batch_s() -> None:
    got = delivered(slow_fleet(batch_s=30.0), 300)
    sent = sorted({m.at_ms - START for _, m in got if m.what == READINGS
                   and "gw-02" in m.topic})
    assert sent and all(ms % 30_000 == 0 for ms in sent)
    fast = [m.at_ms for _, m in got if m.what == READINGS and "gw-01" in m.topic]
    assert len(fast) > 200


def test_a_device_reboot_is_silence_then_a_new_epoch_from_seq_0() -> None:
    fleet = slow_fleet()
    device = fleet.devices_of("gw-02")[0]
    fleet.add_reboot(Reboot(device.id, "gw-02", 200.0, 100.0))
    got = readings(delivered(fleet, 600), device.id)
    silent = [t for _, _, _, t in got if 200_000 <= t - START < 300_000]
    assert not silent
    before = [(e, s) for _, e, s, t in got if t - START < 200_000]
    after = [(e, s) for _, e, s, t in got if t - START >= 300_000]
    assert {e for e, _ in before} == {1} and {e for e, _ in after} == {2}
    assert [s for _, s in after] == list(range(len(after)))
    others = [r for r in readings(delivered(slow_fleet(), 600), fleet.devices_of("gw-02")[1].id)]
    assert {e for _, e, _, _ in others} == {1}


def test_a_reboot_is_a_restart_s_silence_at_most() -> None:
    fleet = slow_fleet()
    fast = fleet.devices_of("gw-01")[0]
    # the core allows every device a restart's silence, fast or slow
    fleet.add_reboot(Reboot(fast.id, "gw-01", 100.0, 100.0))
    with pytest.raises(ValueError, match="down_s <= 100"):
        Reboot(fast.id, "gw-01", 100.0, 101.0)


# -- late readings -------------------------------------------------------------------------------


def test_late_readings_arrive_after_newer_ones_and_keep_their_numbers() -> None:
    fleet = Fleet(FleetSpec(n_gateways=1, n_devices=10, interval_s=5.0, seed=6))
    device = fleet.devices[0]
    fleet.add_late_readings(LateReadings(device.id, "gw-01", 60.0, 100.0, 220.0))
    got = readings(delivered(fleet, 300), device.id)
    held = [(at, s, t) for at, _, s, t in got if 60_000 <= t - START < 100_000]
    assert len(held) == 8 and {at - START for at, _, _ in held} == {220_000}
    seqs = [s for _, _, s, _ in got]
    assert sorted(seqs) == list(range(len(seqs))) and seqs != sorted(seqs)
    newest_before = max(t for at, _, _, t in got if at < START + 220_000)
    assert all(t < newest_before - 100_000 for _, _, t in held)


def test_a_late_window_long_enough_to_make_the_device_offline_is_refused() -> None:
    doc = {"fleet": {"devices": 10, "interval_s": 5.0},
           "run": {"duration_s": 600},
           "incidents": [{"type": "smoke.fire", "gateway": "gw-01", "start_s": 400,
                          "end_s": 500, "late": {"from_s": 10, "to_s": 400,
                                                 "arrive_s": 450}}]}
    with pytest.raises(ValueError, match="offline by the core's rule"):
        Scenario.model_validate(doc).build()
    doc["incidents"][0]["late"] = {"from_s": 360, "to_s": 400, "arrive_s": 450}  # type: ignore[index]
    fleet = Scenario.model_validate(doc).build()
    assert fleet.incidents[0].stays_open
    assert fleet.late_readings == (LateReadings(fleet.incidents[0].device, "gw-01", 360.0,
                                                400.0, 450.0),)
    doc["incidents"][0]["late"] = {"from_s": 260, "to_s": 300, "arrive_s": 250}  # type: ignore[index]
    with pytest.raises(ValidationError, match="to_s <= arrive_s"):
        Scenario.model_validate(doc)


# -- the score -----------------------------------------------------------------------------------


def label(stays_open: bool) -> dict[str, Any]:
    return {"type": "smoke.fire", "device": "smoke-000001", "grade": "major",
            "ts_start": 100_000, "ts_end": 400_000, "stays_open": stays_open}


def test_an_alert_that_must_stay_open_resolved_early_and_raised_again_is_counted() -> None:
    first = Alert("a1", "smoke.fire", "smoke-000001", 120_000, "major", 200_000)  # type: ignore[arg-type]
    again = Alert("a2", "smoke.fire", "smoke-000001", 210_000, "major", 430_000)  # type: ignore[arg-type]
    stray = Alert("a3", "smoke.fire", "smoke-000002", 210_000, "major")  # type: ignore[arg-type]
    unmatched: list[Alert] = []
    (s,) = score([label(True)], [first, again, stray], false_positives=unmatched)
    assert (s.detected, s.duplicates, s.resolved_early, s.false_positives) == (1, 1, 1, 1)
    assert unmatched == [stray]
    (s,) = score([label(False)], [first])
    assert s.resolved_early == 0
    held = Alert("a1", "smoke.fire", "smoke-000001", 120_000, "major", 420_000)  # type: ignore[arg-type]
    (s,) = score([label(True)], [held])
    assert (s.resolved_early, s.duplicates, s.f1) == (0, 0, 1.0)


# -- the shipped scenarios -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pilot.toml", "chaos.toml"])
def test_the_shipped_scenarios_carry_the_field_cases(name: str) -> None:
    fleet = load_scenario(SCENARIOS / name).build()
    open_types = {i.type for i in fleet.incidents if i.stays_open}
    assert {"smoke.fire", "manhole.displaced"} <= open_types
    for late in fleet.late_readings:
        inc = next(i for i in fleet.incidents if i.device == late.device)
        assert late.to_s <= inc.start_s + 1 or late.from_s >= inc.start_s
        assert late.arrive_s > late.to_s + 60, "minutes late"
    assert any(i.on_channel == "obscuration" and i.variant == "impossible"
               and i.level == 400.0 for i in fleet.incidents)
    assert {n.type for n in fleet.nuisances} == {"wrist_bang"}
    slow = [d for d in fleet.devices if d.interval_s >= 45]
    assert slow and all(d.interval_s <= 60 for d in slow)
    assert any(c.batch_s for c in fleet.spec.cadences)
    assert fleet.reboots and all(r.down_s <= 100 for r in fleet.reboots)
    intervals = [fleet.device(r.device).interval_s for r in fleet.reboots]
    assert min(intervals) <= 10 and max(intervals) >= 45, "fast and slow devices reboot"
    first = min(fleet.reboots, key=lambda r: r.at_s)
    device = fleet.device(first.device)
    assert device.phase_s < first.at_s < device.phase_s + device.interval_s, (
        "one reboots before its second reading")
    if name == "chaos.toml":
        stuck = [i for i in fleet.incidents if i.variant == "stuck"]
        assert {(i.device_kind, i.channel) for i in stuck} == STUCK_CHANNELS
        for inc in stuck:  # each showed its noise before it froze (no resting floor)
            signal = fleet.signal(fleet.device(inc.device))
            t = range(0, int(inc.start_s), round(fleet.device(inc.device).interval_s))
            before = [signal.sample(float(x))[0][inc.channel] for x in t]
            assert len(set(before[-60:])) > 2, inc


def test_the_field_cases_play_the_same_messages_for_a_seed() -> None:
    def digest() -> str:
        fleet = slow_fleet(batch_s=20.0)
        slow, fast = fleet.devices_of("gw-02"), fleet.devices_of("gw-01")
        fleet.add_reboot(Reboot(slow[0].id, "gw-02", 100.0, 90.0))
        fleet.add_late_readings(LateReadings(fast[0].id, "gw-01", 50.0, 80.0, 200.0))
        band = next(d for d in fleet.devices if d.kind == "wearable")
        fleet.add_nuisance(WristBang.of(band.id, band.gateway, band.area, 60.0))
        h = hashlib.sha256()
        for _, m in delivered(fleet, 400):
            h.update(m.topic.encode() + m.payload + str(m.at_ms).encode())
        return h.hexdigest()

    assert digest() == digest()
