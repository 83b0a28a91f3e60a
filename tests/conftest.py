"""Shared fixtures: a real Mosquitto and a real VictoriaMetrics on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from sensing.services import Mosquitto, VictoriaMetrics


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """Commands a test runs in-process configure structlog (some at level ERROR); a later
    test that captures warnings must not depend on the order tests run in."""
    saved = structlog.get_config()
    yield
    structlog.reset_defaults()
    structlog.configure(**saved)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    with Mosquitto.start(tmp_path_factory.mktemp("broker")) as b:
        yield b


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics.start(tmp_path_factory.mktemp("store")) as s:
        yield s


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
