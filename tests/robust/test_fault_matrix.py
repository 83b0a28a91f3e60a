"""The fault matrix at CI scale, one test per row (sensing.testing.faults; the full scale is
scripts/fault_matrix.py): a fresh Mosquitto, VictoriaMetrics and `sensing run` per row, real
edge agents with durable buffers (or a QoS 1 publisher), an SOS published during the fault.
Every row: nothing lost, nothing stored twice, the SOS alerted, and within seconds while
the store is down."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensing.testing.faults import CI_SCALE, FAULTS, Fault, run_fault

pytestmark = [pytest.mark.e2e, pytest.mark.robust]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name.replace(" ", "-") for f in FAULTS])
def test_the_fault_loses_nothing_stores_nothing_twice_and_delays_no_alert(
    fault: Fault, tmp_path: Path
) -> None:
    row = run_fault(fault, tmp_path, CI_SCALE)
    print(f"\n{row.fault}: sent {row.sent}, stored {row.stored}, lost {row.lost}, stored "
          f"twice {row.stored_twice}, alert delay {row.alert_delay_s} s, {row.seconds} s; "
          + "; ".join(row.notes))
    assert row.sent > 0
    assert row.lost == 0, row.notes
    assert row.stored_twice == 0
    assert row.stored == row.sent
    assert row.alert_delay_s is not None, "the SOS published during the fault was never alerted"
    assert row.alerts_doubled == 0, "an SOS raised under two alert ids"
    if row.alert_bound_s is not None:
        assert row.alert_delay_s <= row.alert_bound_s, "the alert waited for the store"
