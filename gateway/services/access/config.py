"""Settings a manager changes at runtime (through the API), and the registered webhook clients."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.core.errors import Code, NotFound, ValidationFailed
from gateway.core.models import WebhookClient
from gateway.core.netguard import require_url
from gateway.core.ports import Clock
from gateway.store import config as repo
from gateway.store.writer import Writer

log = logging.getLogger(__name__)

NEW_ORDER_NAMES = ("NEW_ORDER", "ORDER_CREATED")


def _int_in(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _timezone(v: Any) -> bool:
    if not isinstance(v, str) or not v or len(v) > 64 or ".." in v or v.startswith("/"):
        return False
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


VALIDATORS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "targetTimeDefault": (_int_in(1, 86_400), "an integer number of seconds from 1 to 86400"),
    "timezone": (_timezone, "an IANA time zone name such as Europe/Paris"),
    # Kept for clients that send back the whole object they read; we have no Zigbee radio.
    "zigbeePreset": (_int_in(0, 255), "an integer from 0 to 255"),
    "newOrderEventType": (lambda v: v in NEW_ORDER_NAMES, "NEW_ORDER or ORDER_CREATED"),
}


class ConfigService:
    def __init__(
        self,
        writer: Writer,
        clock: Clock,
        defaults: dict[str, Any],
        outbound_allow: frozenset[str] = frozenset(),
    ) -> None:
        self._writer = writer
        self._clock = clock
        self._values: dict[str, Any] = dict(defaults)
        self._clients: dict[str, WebhookClient] = {}
        self._allow = outbound_allow
        self.tz = ZoneInfo(self._values["timezone"])

    async def load(self) -> None:
        def read(conn: sqlite3.Connection) -> tuple[dict[str, Any], list[WebhookClient]]:
            return repo.load_settings(conn), repo.load_clients(conn)

        stored, clients = await self._writer.run(read)
        for key, value in stored.items():
            if key in VALIDATORS and VALIDATORS[key][0](value):
                self._values[key] = value
        self.tz = ZoneInfo(self._values["timezone"])
        self._clients = {c.url: c for c in clients}

    def settings(self) -> dict[str, Any]:
        return dict(self._values)

    def get(self, key: str) -> Any:
        return self._values[key]

    async def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        for key in changes:
            if key not in VALIDATORS:
                raise ValidationFailed(Code.UNKNOWN_SETTING, f"Unknown setting: {key[:64]}.")
        for key, value in changes.items():
            check, expected = VALIDATORS[key]
            if not check(value):
                raise ValidationFailed(
                    Code.BAD_SETTING_VALUE, f"Invalid value for {key}: must be {expected}."
                )

        def apply(_: None) -> None:
            self._values.update(changes)
            self.tz = ZoneInfo(self._values["timezone"])

        await self._writer.run(lambda conn: repo.save_settings(conn, changes), apply)
        log.info("gateway settings changed: %s", ", ".join(sorted(changes)))
        return self.settings()

    # -- webhook clients ---------------------------------------------------------------

    def check_client_url(self, url: Any) -> str:
        return require_url(url, self._allow, "http_client")

    async def register_client(self, url: Any, api_version: str) -> WebhookClient:
        url = self.check_client_url(url)
        now = self._clock.now()
        return await self._writer.run(
            lambda conn: repo.add_client(conn, url, api_version, now),
            lambda c: self._clients.__setitem__(c.url, c),
        )

    async def unregister_client(self, url: Any) -> None:
        url = self.check_client_url(url)
        if url not in self._clients:
            raise NotFound(Code.UNKNOWN_HTTP_CLIENT)
        await self._writer.run(
            lambda conn: repo.remove_client(conn, url), lambda _: self._clients.pop(url, None)
        )

    def clients(self) -> list[WebhookClient]:
        return list(self._clients.values())

    def forget_client(self, url: str) -> None:
        """Memory follows a removal committed elsewhere (a client that answered 410)."""
        self._clients.pop(url, None)
