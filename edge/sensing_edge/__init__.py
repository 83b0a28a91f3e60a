"""sensing_edge: the gateway's edge agent. Light: it never imports numba.

    from sensing_edge import AgentSettings, GatewayAgent, SimulatedDriver

    agent = GatewayAgent(
        AgentSettings(gateway="gw-1", area="demo", broker_port=1883),
        [SimulatedDriver([("smoke-1", "smoke")], interval_s=1.0, seed=0)],
    )
    agent.start()
    ...
    agent.stop(timeout=5.0)
"""

from .agent import AgentSettings, AgentStats, GatewayAgent, PayloadHook, wall_clock_ms
from .batching import NumberedSample, PayloadFormat, Sequencer, encode_batch, reading_dict
from .drivers import Driver, SensorSample
from .outbox import MemoryOutbox, Outbox, OutboxEntry
from .simulated import SimulatedDriver, make_fleet

__all__ = [
    "AgentSettings",
    "AgentStats",
    "Driver",
    "GatewayAgent",
    "MemoryOutbox",
    "NumberedSample",
    "Outbox",
    "OutboxEntry",
    "PayloadFormat",
    "PayloadHook",
    "SensorSample",
    "Sequencer",
    "SimulatedDriver",
    "encode_batch",
    "make_fleet",
    "reading_dict",
    "wall_clock_ms",
]
