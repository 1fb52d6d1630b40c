"""Fixtures: a real gateway (real SQLite file, real aiohttp server on 127.0.0.1) per test."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from gateway.app import Gateway, build
from gateway.settings import Settings, load_settings

# The machines are shared and noisy: a property test judges behaviour, never speed.
hypothesis_settings.register_profile(
    "tablegate", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("tablegate")


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_logged_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """A logged exception is a bug unless the test says it expects one."""
    handler = _ErrorCollector()
    root = logging.getLogger()
    root.addHandler(handler)
    yield
    root.removeHandler(handler)
    if request.node.get_closest_marker("allow_logged_errors") is None and handler.records:
        msgs = "; ".join(r.getMessage() for r in handler.records[:5])
        pytest.fail(f"errors were logged: {msgs}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_logged_errors: the test expects ERROR logs")


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    # No uplink probe: tests never reach for the internet.
    overrides.setdefault("uplink_probe", [])
    return load_settings(None, data_dir=data_dir, mdns_enabled=False, host="127.0.0.1", **overrides)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    gw = await build(settings)
    yield gw
    await gw.writer.close()
    await gw.reader.close()


@pytest.fixture
async def client(aiohttp_client: Any, gateway: Gateway) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    # The app (and its printer workers) stops before the `gateway` fixture closes the store.
    test_client = await aiohttp_client(gateway.app)
    yield test_client
    await test_client.close()


@pytest.fixture
async def token(gateway: Gateway) -> str:
    issued = await gateway.tokens.issue("test-pos", "127.0.0.1")
    return issued.secret


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
