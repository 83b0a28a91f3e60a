"""sensing_sim: simulated sensor fleets with realistic signals, labelled incidents and faults.

    from sensing_sim import Fleet, FleetSpec, LiveOptions, run_live

    fleet = Fleet(FleetSpec(n_gateways=10, n_devices=1000, seed=1))
    labels = fleet.schedule_demo_incidents(duration_s=60)
    report = run_live(fleet, LiveOptions(port=1883, duration_s=60))

    stream = FleetStream(fleet, 600, start_ms=1795478400000,
                         faults=TransportFaults(duplicate_rate=0.02, malformed=6))
    for now_ms, messages in stream.steps(): ...        # what reaches the broker, in order

The offline run (`sensing_sim.offline`) loads the core, and with it numba; nothing here does.
"""

from sensing_sim.cases import Cadence, LateReadings, Reboot, WristBang
from sensing_sim.faults import MALFORMED_REASONS, malformed_payload
from sensing_sim.fleet import (
    DEFAULT_AREAS,
    DEFAULT_MIX,
    DEMO_INCIDENT_TYPES,
    Device,
    Fleet,
    FleetDriver,
    FleetSpec,
    Gateway,
    kind_counts,
)
from sensing_sim.incidents import INCIDENT_CHANNEL, INCIDENT_TYPES, LEVEL_RANGES, Incident
from sensing_sim.live import LiveError, LiveOptions, LiveProgress, LiveReport, run_live
from sensing_sim.signals import (
    ManholeSignal,
    Signal,
    SmokeSignal,
    WearableSignal,
    make_signal,
)
from sensing_sim.tally import UniqueReadings
from sensing_sim.transport import ClockSkew, FleetStream, Message, Restart, TransportFaults

__all__ = [
    "DEFAULT_AREAS",
    "DEFAULT_MIX",
    "DEMO_INCIDENT_TYPES",
    "INCIDENT_CHANNEL",
    "INCIDENT_TYPES",
    "LEVEL_RANGES",
    "MALFORMED_REASONS",
    "Cadence",
    "ClockSkew",
    "Device",
    "Fleet",
    "FleetDriver",
    "FleetSpec",
    "FleetStream",
    "Gateway",
    "Incident",
    "LateReadings",
    "LiveError",
    "LiveOptions",
    "LiveProgress",
    "LiveReport",
    "ManholeSignal",
    "Message",
    "Reboot",
    "Restart",
    "Signal",
    "SmokeSignal",
    "TransportFaults",
    "UniqueReadings",
    "WearableSignal",
    "WristBang",
    "kind_counts",
    "make_signal",
    "malformed_payload",
    "run_live",
]
