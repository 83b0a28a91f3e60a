"""The scorer on hand-made labels and alerts: every count can be checked by eye."""

from __future__ import annotations

from typing import Any

import pytest

from sensing_sim.score import alerts_from_transitions, score

T = 1_795_478_400_000


def label(type_: str, device: str, start_s: float, end_s: float, grade: str) -> dict[str, Any]:
    return {"type": type_, "device": device, "grade": grade,
            "ts_start": T + int(start_s * 1000), "ts_end": T + int(end_s * 1000)}


def transition(aid: str, type_: str, device: str, raised_s: float, grade: str,
               state: str = "raised") -> dict[str, Any]:
    return {"alert_id": aid, "type": type_, "device": device, "grade": grade, "state": state,
            "ts_raised": T + int(raised_s * 1000)}


def test_recall_precision_latency_duplicates_and_grades() -> None:
    labels = [
        label("smoke.fire", "s-1", 10, 60, "critical"),   # found at 14 s, major then critical
        label("smoke.fire", "s-2", 100, 160, "major"),    # found twice: one duplicate
        label("smoke.fire", "s-3", 200, 260, "major"),    # missed
        label("wearable.sos", "w-1", 50, 55, "critical"),  # found at 50.5 s, graded minor
    ]
    alerts = alerts_from_transitions([
        transition("a1", "smoke.fire", "s-1", 14, "major"),
        transition("a1", "smoke.fire", "s-1", 20, "critical", "updated"),
        transition("a2", "smoke.fire", "s-2", 110, "major"),
        transition("a3", "smoke.fire", "s-2", 150, "major"),
        transition("a4", "smoke.fire", "s-9", 120, "major"),    # no label: false positive
        transition("a5", "smoke.fire", "s-3", 190, "major"),    # before its label: false pos.
        transition("a6", "wearable.sos", "w-1", 50.5, "minor"),
        transition("a7", "device.offline", "m-1", 30, "major"),  # a type with no labels
    ])
    by_type = {s.type: s for s in score(labels, alerts, grace_s=60)}
    fire = by_type["smoke.fire"]
    assert (fire.labels, fire.detected, fire.alerts, fire.duplicates, fire.false_positives) == (
        3, 2, 5, 1, 2)
    assert fire.recall == pytest.approx(2 / 3)
    assert fire.precision == pytest.approx(2 / 4)
    assert fire.f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert fire.latency_median_s == pytest.approx(7.0)  # 4 s and 10 s
    assert fire.latency_p95_s == pytest.approx(10.0)
    assert fire.grade_ok == 2
    sos = by_type["wearable.sos"]
    assert (sos.recall, sos.precision, sos.grade_ok, sos.latency_median_s) == (1.0, 1.0, 0, 0.5)
    offline = by_type["device.offline"]
    assert (offline.labels, offline.false_positives, offline.precision, offline.recall) == (
        0, 1, 0.0, 0.0)


def test_an_alert_after_the_grace_period_does_not_count() -> None:
    labels = [label("smoke.co", "s-1", 0, 60, "critical")]
    late = alerts_from_transitions([transition("a", "smoke.co", "s-1", 60 + 601, "critical")])
    (sc,) = score(labels, late, grace_s=600)
    assert (sc.detected, sc.false_positives) == (0, 1)
    (sc,) = score(labels, late, grace_s=700)
    assert (sc.detected, sc.false_positives) == (1, 0)


def test_time_scaled_labels_report_latency_and_grace_in_simulated_seconds() -> None:
    # a replay at 60x: 1 s of wall time is a simulated minute
    fast = {**label("smoke.co", "s-1", 0, 10, "critical"), "speed": 60}
    found = alerts_from_transitions([transition("a", "smoke.co", "s-1", 2, "critical")])
    (sc,) = score([fast], found, grace_s=600)
    assert sc.detected == 1 and sc.latency_median_s == pytest.approx(120.0)
    # grace 600 simulated seconds is 10 s of the replay's wall clock: 19 s counts, 21 s not
    inside = alerts_from_transitions([transition("a", "smoke.co", "s-1", 19, "critical")])
    outside = alerts_from_transitions([transition("a", "smoke.co", "s-1", 21, "critical")])
    assert score([fast], inside, grace_s=600)[0].detected == 1
    assert score([fast], outside, grace_s=600)[0].detected == 0
    # without speed the same alert is well inside the grace
    plain = label("smoke.co", "s-1", 0, 10, "critical")
    assert score([plain], outside, grace_s=600)[0].latency_median_s == pytest.approx(21.0)


@pytest.mark.parametrize("speed", [0, -2, "fast", True, float("nan")])
def test_a_bad_speed_is_an_error(speed: object) -> None:
    bad = {**label("smoke.co", "s-1", 0, 10, "critical"), "speed": speed}
    with pytest.raises(ValueError, match="speed"):
        score([bad], [])


def test_each_drop_of_a_flapping_link_is_matched_by_its_own_alert() -> None:
    labels = [label("gateway.offline", "gw-07", start, start + 30, "major")
              for start in (240, 540, 840)]
    alerts = alerts_from_transitions([
        transition("g1", "gateway.offline", "gw-07", 240, "major"),
        transition("g2", "gateway.offline", "gw-07", 541, "major"),
        transition("g3", "gateway.offline", "gw-07", 842, "major"),
        transition("g4", "gateway.offline", "gw-07", 850, "major"),  # a second for the third
    ])
    [s] = score(labels, alerts, grace_s=600)
    assert (s.labels, s.detected, s.duplicates, s.false_positives) == (3, 3, 1, 0)
    assert s.latency_median_s == 1.0

    # the first drop went unnoticed: the second drop's alert is not taken for it
    [s] = score(labels, [a for a in alerts if a.alert_id != "g1"], grace_s=600)
    assert (s.detected, s.duplicates, s.false_positives) == (2, 1, 0)


def test_a_label_that_begins_under_an_alert_still_open_is_covered_without_a_latency() -> None:
    labels = [label("gateway.offline", "gw-07", start, start + 30, "major")
              for start in (3000, 3600, 4200, 4800)]
    alerts = alerts_from_transitions([
        transition("g1", "gateway.offline", "gw-07", 3000, "major"),
        transition("g1", "gateway.offline", "gw-07", 3065, "major", "resolved"),
        transition("g2", "gateway.offline", "gw-07", 3600, "major"),
        transition("g2", "gateway.offline", "gw-07", 3665, "major", "resolved"),
        # flapping: the core holds the third drop's alert open through the fourth
        transition("g3", "gateway.offline", "gw-07", 4200, "major"),
        transition("g3", "gateway.offline", "gw-07", 4230, "major", "updated"),
        transition("g3", "gateway.offline", "gw-07", 6066, "major", "resolved"),
    ])
    [s] = score(labels, alerts)
    assert (s.detected, s.covered, s.duplicates, s.false_positives) == (4, 1, 0, 0)
    assert s.recall == 1.0 and s.latency_p95_s == 0.0
    # an alert resolved before the label began covers nothing
    [s] = score([*labels[:1], label("gateway.offline", "gw-07", 3070, 3080, "major")],
                alerts[:1])
    assert (s.detected, s.covered) == (1, 0)
