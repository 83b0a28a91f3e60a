"""The core's settings object and the `sensing` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensing.settings import CoreSettings


def test_settings_from_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "core.toml"
    conf.write_text('mqtt_port = 1884\nstore_url = "http://127.0.0.1:9999"\n'
                    'dispatch_clock = "fleet"\n[offline]\nmin_timeout_s = 90.0\n')
    monkeypatch.setenv("SENSING_STORE_URL", "http://127.0.0.1:8428")
    s = CoreSettings.load(conf, max_payload_bytes=4096)
    assert s.mqtt_port == 1884
    assert s.store_url == "http://127.0.0.1:8428"  # the environment beats the file
    assert s.max_payload_bytes == 4096
    assert s.dispatch_clock == "fleet"
    assert s.offline.min_timeout_s == 90.0


def test_unknown_settings_are_refused(tmp_path: Path) -> None:
    conf = tmp_path / "core.toml"
    conf.write_text("mqtt_prot = 1884\n")
    with pytest.raises(ValueError, match="mqtt_prot"):
        CoreSettings.load(conf)


def sensing(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensing.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_help_explains_every_command() -> None:
    out = sensing("--help")
    assert out.returncode == 0
    for command in ("run", "demo", "watch", "ack"):
        assert command in out.stdout
    assert "examples:" in out.stdout


def test_bad_settings_exit_with_a_usage_error(tmp_path: Path) -> None:
    conf = tmp_path / "core.toml"
    conf.write_text("mqtt_port = 'not a port'\n")
    out = sensing("run", "--config", str(conf))
    assert out.returncode == 2
    assert "bad settings" in out.stderr and "mqtt_port" in out.stderr


def test_ack_without_a_broker_fails_clearly() -> None:
    from sensing.services import free_port

    out = sensing("ack", "abc", "--by", "op", "--mqtt-port", str(free_port()))
    assert out.returncode != 0
    assert "no broker" in out.stderr


def test_the_core_process_has_glibc_give_big_freed_blocks_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`sensing run` fixes glibc's mmap threshold, unless the operator set MALLOC_* himself."""
    from sensing.process import give_freed_memory_back

    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert not give_freed_memory_back()
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    assert not give_freed_memory_back()
    monkeypatch.delenv("GLIBC_TUNABLES")
    for k in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(k)
    assert give_freed_memory_back()

