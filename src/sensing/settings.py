"""The core's settings: one object, from a TOML file and SENSING_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from sensing.alerts.lifecycle import LifecyclePolicy
from sensing.detect.offline import OfflinePolicy
from sensing_edge.security import BrokerSecurity


class CoreSettings(BaseSettings):
    """Environment variables override the file: SENSING_MQTT_PORT=1884, SENSING_STORE_URL=..."""

    # hide_input_in_errors: a misspelt or mistyped setting's value may be a password, and a
    # ValidationError prints the values it rejects
    model_config = SettingsConfigDict(env_prefix="SENSING_", env_nested_delimiter="__",
                                      extra="forbid", hide_input_in_errors=True)

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_client_id: str = "sensing-core"
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_password_file: Path | None = None
    """the password is the first line of this file (exclusive with mqtt_password)"""
    mqtt_ca_file: Path | None = None
    """TLS to the broker, trusting only this CA (PEM)"""
    mqtt_cert_file: Path | None = None
    """client certificate for mutual TLS, with mqtt_key_file"""
    mqtt_key_file: Path | None = None
    mqtt_tls: bool = False
    """TLS with the system's CA store (implied by mqtt_ca_file)"""
    mqtt_tls_insecure_skip_hostname: bool = False
    ack_requires_identity: bool = False
    """accept acks only on sensing/v1/ack/{responder} with `by` == responder (the secure
    configuration, where the broker's ACL lets each user write only its own ack topic)"""

    devices_follow_gateway: bool = False
    """a device belongs to the gateway that first reported it to this core, and readings of it
    through another gateway are refused (dead letter `gateway_mismatch`): no gateway can speak
    for another's devices. True: a device belongs to whichever gateway reported it last, for
    deployments where devices roam between gateways (BLE wristbands heard by several)"""

    store_url: str = "http://127.0.0.1:8428"
    """may carry credentials (http://user:password@host/): logged only through redact_url"""
    store_token: str = Field("", repr=False)
    store_org: str = "sensing"
    store_bucket: str = "sensing"
    store_timeout_s: float = 10.0

    max_payload_bytes: int = Field(1 << 20, gt=0)
    batch_max_messages: int = Field(2000, gt=0)
    batch_max_wait_s: float = Field(0.05, gt=0)
    batch_linger_s: float = Field(0.01, ge=0)
    """after a step's first message, how long it waits for more: a lone alarm waits this long
    at most, a busy stream shares each step's fixed costs among this much of it"""
    batch_max_bytes: int = Field(4 << 20, gt=0)
    """payload bytes one step takes at most (beyond its first message): a step's lines and
    alerts are built whole in memory, and a hostile ~1 MB message can become ~45 MB of lines
    (long names, many readings), so steps are bounded by bytes as well as by messages"""
    commit_max_bytes: int = Field(24 << 20, gt=0)
    """line protocol (and readings' columns, for their confirmations) of the steps processed
    and not yet stored and acknowledged, at most (one step alone may be more): a second of a
    busy stream, enough to ride out the store's pauses while holding the core's memory down;
    beyond it the step loop waits"""
    store_request_bytes: int = Field(4 << 20, gt=0)
    """line protocol in one direct write to the store, about: the steps a commit takes
    together are written in requests of this size, not joined into one copy of them all"""
    state_dir: Path = Path(".run/core")
    spool_max_bytes: int = Field(1 << 30, gt=0)
    """line protocol waiting for the store on the core's disk, at most; when full, the core
    stops taking messages (they wait in the broker) until the store takes some"""
    shutdown_grace_s: float = Field(5.0, ge=0)
    """on a stop, how long the spool may still drain into the store (the rest waits on disk
    for the next start)"""
    detectors_file: Path | None = None
    """TOML of per-kind, per-area and per-device threshold overrides (sensing.detect.overrides)"""
    stats_interval_s: float = 1.0
    log_format: Literal["console", "json"] = "console"
    directory_file: Path | None = None
    """the directory TOML (areas, responders, residents, routing and escalation policies;
    docs/dispatch.md): without it every alert reaches only the contract's dispatch topics, on
    the shipped policies' schedule, and any `by` may act"""
    dispatch_clock: Literal["wall", "fleet"] = "wall"
    """what escalation follows: the wall clock (live), or the fleet's own (a replay: the
    newest event time of any gateway), so that a replay gives the same dispatch record"""
    lifecycle: LifecyclePolicy = LifecyclePolicy()
    offline: OfflinePolicy = OfflinePolicy()

    @model_validator(mode="after")
    def _broker_security_valid(self) -> CoreSettings:
        self.broker_security()
        return self

    def broker_security(self) -> BrokerSecurity:
        """Credentials and TLS of the core's MQTT session (ValueError naming the setting)."""
        try:
            return BrokerSecurity(
                username=self.mqtt_username, password=self.mqtt_password,
                password_file=self.mqtt_password_file, ca_file=self.mqtt_ca_file,
                cert_file=self.mqtt_cert_file, key_file=self.mqtt_key_file, tls=self.mqtt_tls,
                tls_insecure_skip_hostname=self.mqtt_tls_insecure_skip_hostname)
        except ValidationError as exc:
            raise ValueError("MQTT security: " + "; ".join(
                f"mqtt_{e['msg'].removeprefix('Value error, ')}" if e["loc"] else
                e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @classmethod
    def load(cls, config: Path | None = None, **overrides: object) -> CoreSettings:
        """Settings from `config` (TOML), then the environment, then explicit overrides."""
        if config is None:
            return cls(**overrides)  # type: ignore[arg-type]

        class _FromFile(cls):  # type: ignore[valid-type,misc]
            model_config = SettingsConfigDict(toml_file=config)

        return cls.model_validate(_FromFile(**overrides).model_dump())


def settings_error_text(exc: ValidationError) -> str:
    """One line per rejected setting, naming it and why, never its value (which may be a
    secret: the input is hidden from the errors, and only `loc` and `msg` are printed)."""
    return "\n".join(
        f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors())
