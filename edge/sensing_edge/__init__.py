"""sensing_edge: the gateway's edge agent. Light: it never imports numba.

Every reading is committed to a durable buffer (`buffer_path`) before it is published, and
deleted from it once the core confirms it stored it (`confirm`, sensing_edge.agent).

    from sensing_edge import AgentSettings, GatewayAgent, SimulatedDriver

    agent = GatewayAgent(
        AgentSettings(gateway="gw-1", area="demo", broker_port=1883,
                      buffer_path="/var/lib/sensing-edge/buffer.db"),
        [SimulatedDriver([("smoke-1", "smoke")], interval_s=1.0, seed=0)],
    )
    agent.start()
    ...
    agent.stop(timeout=5.0)
"""

from .agent import AgentSettings, AgentStats, GatewayAgent, PayloadHook, wall_clock_ms
from .alarms import DEFAULT_ALARMS, AlarmRule, AlarmSettings, LocalAlarm
from .batching import NumberedSample, PayloadFormat, encode_batch, reading_dict
from .buffer import ReadingBuffer, WhenFull
from .config import GatewayConfig, load_config
from .drivers import Driver, SensorSample
from .local_input import LocalInput
from .security import BrokerSecurity
from .simulated import SimulatedDriver, make_fleet

__all__ = [
    "DEFAULT_ALARMS",
    "AgentSettings",
    "AgentStats",
    "AlarmRule",
    "AlarmSettings",
    "BrokerSecurity",
    "Driver",
    "GatewayAgent",
    "GatewayConfig",
    "LocalAlarm",
    "LocalInput",
    "NumberedSample",
    "PayloadFormat",
    "PayloadHook",
    "ReadingBuffer",
    "SensorSample",
    "SimulatedDriver",
    "WhenFull",
    "encode_batch",
    "load_config",
    "make_fleet",
    "reading_dict",
    "wall_clock_ms",
]
