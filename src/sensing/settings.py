"""The core's settings: one object, from a TOML file and SENSING_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from sensing.alerts.lifecycle import LifecyclePolicy
from sensing.detect.offline import OfflinePolicy
from sensing.dispatch.router import DispatchPolicy


class CoreSettings(BaseSettings):
    """Environment variables override the file: SENSING_MQTT_PORT=1884, SENSING_STORE_URL=..."""

    model_config = SettingsConfigDict(env_prefix="SENSING_", env_nested_delimiter="__",
                                      extra="forbid")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_client_id: str = "sensing-core"
    mqtt_username: str | None = None
    mqtt_password: str | None = None

    store_url: str = "http://127.0.0.1:8428"
    store_token: str = ""
    store_org: str = "sensing"
    store_bucket: str = "sensing"
    store_timeout_s: float = 10.0

    max_payload_bytes: int = Field(1 << 20, gt=0)
    batch_max_messages: int = Field(2000, gt=0)
    batch_max_wait_s: float = Field(0.05, gt=0)
    state_dir: Path = Path(".run/core")
    detectors_file: Path | None = None
    """TOML of per-kind, per-area and per-device threshold overrides (sensing.detect.overrides)"""
    stats_interval_s: float = 1.0
    log_format: Literal["console", "json"] = "console"
    dispatch: DispatchPolicy = DispatchPolicy()
    lifecycle: LifecyclePolicy = LifecyclePolicy()
    offline: OfflinePolicy = OfflinePolicy()

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
