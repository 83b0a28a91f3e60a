"""The warm-up runs every kernel on a throwaway pipeline and raises no alert."""

from __future__ import annotations

from sensing.kernels.checks import run_checks
from sensing.kernels.dedup import dedup_window
from sensing.kernels.lineproto import format_readings
from sensing.kernels.threshold import threshold_bank
from sensing.warmup import QUIET, warm_up
from sensing.wire.kinds import KIND_CHANNELS


def test_warm_up_compiles_the_hot_kernels_and_raises_nothing() -> None:
    seconds, alerts = warm_up()
    assert seconds > 0 and alerts == 0
    for kernel in (dedup_window, threshold_bank, run_checks, format_readings):
        assert kernel.signatures, kernel


def test_warm_up_has_an_everyday_value_for_every_channel() -> None:
    assert set(QUIET) == {c for channels in KIND_CHANNELS.values() for c in channels}
