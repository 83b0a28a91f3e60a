"""A gateway's configuration file (TOML): who it is, its broker, buffer, alarms and drivers.

    sensing-edge --config /etc/sensing-edge/gateway.toml

See `edge/gateway.example.toml` for every option with its default. Sections:

- `[gateway]` `id`, `area`;
- `[broker]` `host`, `port`, `client_id`, `keepalive_s`, and the security options of
  `sensing_edge.security.BrokerSecurity` (`username`, `password_file`, `ca_file`, ...);
- `[publish]` `format`, `max_payload_bytes`, `batch_max_readings`, `batch_max_age_s`,
  `max_inflight`, `drain_readings_per_s`, `reconnect_min_s`, `reconnect_max_s`,
  `poll_interval_s`, and the end-to-end acknowledgement: `confirm`,
  `max_unconfirmed_readings`, `confirm_timeout_s`, `confirm_timeout_max_s`,
  `confirm_give_up_after`;
- `[buffer]` `path`, `max_readings`, `when_full`;
- `[alarms]` `command`, `repeat_s`, `hook_timeout_s`, and `[[alarms.rules]]` to replace the
  default rules;
- `[[drivers]]`, one table per driver: `type = "local"` with `address` (JSON lines over
  loopback UDP or a Unix socket, `sensing_edge.local_input`), or `type = "simulated"` with
  `devices` (a count) and `mix`, `interval_s`, `seed`.

Relative paths are relative to the file's folder. Unknown keys are errors, so a typo does not
go unnoticed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .agent import NAME_PATTERN, AgentSettings, ConfirmBy
from .alarms import AlarmSettings
from .batching import MAX_MQTT_PAYLOAD_BYTES, MIN_PAYLOAD_BYTES, PayloadFormat
from .buffer import WhenFull
from .drivers import Driver
from .local_input import LocalInput
from .security import BrokerSecurity
from .simulated import SimulatedDriver, make_fleet

_STRICT = ConfigDict(frozen=True, extra="forbid")


class GatewaySection(BaseModel):
    model_config = _STRICT
    id: str = Field(pattern=NAME_PATTERN)
    area: str = Field(pattern=NAME_PATTERN)


def _agent_default(name: str) -> Any:
    """The agent's own default for a setting, so that the file's defaults are never a second
    copy that can drift."""
    return AgentSettings.model_fields[name].default


class BrokerSection(BrokerSecurity):
    host: str = _agent_default("broker_host")
    port: int = Field(default=_agent_default("broker_port"), ge=1, le=65535)
    client_id: str = _agent_default("client_id")
    keepalive_s: int = Field(default=_agent_default("keepalive_s"), ge=5, le=65535)

    def security(self) -> BrokerSecurity:
        return BrokerSecurity.model_validate(
            self.model_dump(include=set(BrokerSecurity.model_fields)))


class PublishSection(BaseModel):
    model_config = _STRICT
    format: PayloadFormat = _agent_default("payload_format")
    max_payload_bytes: int = Field(default=_agent_default("max_payload_bytes"),
                                   ge=MIN_PAYLOAD_BYTES, le=MAX_MQTT_PAYLOAD_BYTES)
    batch_max_readings: int = _agent_default("batch_max_readings")
    batch_max_age_s: float = _agent_default("batch_max_age_s")
    max_inflight: int = _agent_default("max_inflight")
    drain_readings_per_s: float = _agent_default("drain_readings_per_s")
    reconnect_min_s: float = _agent_default("reconnect_min_s")
    reconnect_max_s: float = _agent_default("reconnect_max_s")
    poll_interval_s: float = _agent_default("poll_interval_s")
    confirm: ConfirmBy = _agent_default("confirm")
    max_unconfirmed_readings: int = _agent_default("max_unconfirmed_readings")
    confirm_timeout_s: float = _agent_default("confirm_timeout_s")
    confirm_timeout_max_s: float = _agent_default("confirm_timeout_max_s")
    confirm_give_up_after: int = _agent_default("confirm_give_up_after")


class BufferSection(BaseModel):
    model_config = _STRICT
    path: Path | None = _agent_default("buffer_path")
    max_readings: int = _agent_default("buffer_max_readings")
    when_full: WhenFull = _agent_default("buffer_when_full")


class LocalDriver(BaseModel):
    model_config = _STRICT
    type: Literal["local"]
    address: str
    max_line_bytes: int = Field(default=65536, ge=1)

    def build(self) -> Driver:
        return LocalInput(self.address, max_line_bytes=self.max_line_bytes)


class SimulatedDriverSection(BaseModel):
    model_config = _STRICT
    type: Literal["simulated"]
    devices: int = Field(default=100, ge=1, le=1_000_000)
    mix: dict[str, float] = Field(default_factory=lambda: {"smoke": 0.5, "manhole": 0.2,
                                                            "wearable": 0.3})
    interval_s: float = Field(default=5.0, gt=0)
    seed: int = 0

    def build(self, gateway: str) -> Driver:
        return SimulatedDriver(make_fleet(self.devices, self.mix, gateway), self.interval_s,
                               self.seed)


DriverSection = Annotated[LocalDriver | SimulatedDriverSection, Field(discriminator="type")]


class GatewayConfig(BaseModel):
    model_config = _STRICT
    gateway: GatewaySection
    broker: BrokerSection = BrokerSection()
    publish: PublishSection = PublishSection()
    buffer: BufferSection = BufferSection()
    alarms: AlarmSettings = AlarmSettings()
    drivers: tuple[DriverSection, ...] = Field(min_length=1)

    def agent_settings(self) -> AgentSettings:
        p, b = self.publish, self.buffer
        return AgentSettings(
            gateway=self.gateway.id, area=self.gateway.area, broker_host=self.broker.host,
            broker_port=self.broker.port, client_id=self.broker.client_id,
            keepalive_s=self.broker.keepalive_s, payload_format=p.format,
            max_payload_bytes=p.max_payload_bytes,
            batch_max_readings=p.batch_max_readings, batch_max_age_s=p.batch_max_age_s,
            max_inflight=p.max_inflight, drain_readings_per_s=p.drain_readings_per_s,
            reconnect_min_s=p.reconnect_min_s, reconnect_max_s=p.reconnect_max_s,
            poll_interval_s=p.poll_interval_s, confirm=p.confirm,
            max_unconfirmed_readings=p.max_unconfirmed_readings,
            confirm_timeout_s=p.confirm_timeout_s, confirm_timeout_max_s=p.confirm_timeout_max_s,
            confirm_give_up_after=p.confirm_give_up_after, buffer_path=b.path,
            buffer_max_readings=b.max_readings, buffer_when_full=b.when_full,
            alarms=self.alarms, security=self.broker.security())

    def build_drivers(self) -> list[Driver]:
        """The drivers, opened (a local input binds its socket now)."""
        out: list[Driver] = []
        try:
            for d in self.drivers:
                out.append(d.build() if isinstance(d, LocalDriver) else d.build(self.gateway.id))
        except BaseException:
            for driver in out:
                close = getattr(driver, "close", None)
                if close is not None:
                    close()
            raise
        return out


def _relative_to(base: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """Paths in the file, made relative to its folder."""
    broker = dict(doc.get("broker", {}))
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        if isinstance(broker.get(key), str):
            broker[key] = str(base / broker[key])
    buffer = dict(doc.get("buffer", {}))
    if isinstance(buffer.get("path"), str):
        buffer["path"] = str(base / buffer["path"])
    out = {**doc}
    if broker:
        out["broker"] = broker
    if buffer:
        out["buffer"] = buffer
    return out


def load_config(path: Path) -> GatewayConfig:
    """Read and check a gateway's TOML file; raises OSError, tomllib.TOMLDecodeError or
    pydantic.ValidationError with what is wrong."""
    with path.open("rb") as f:
        doc = tomllib.load(f)
    return GatewayConfig.model_validate(_relative_to(path.resolve().parent, doc))
