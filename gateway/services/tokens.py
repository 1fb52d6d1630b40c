"""Access tokens and the button window.

A token is shown once, stored as its SHA-256 digest, and looked up by digest: the secret never
sits in the database or a log. Tokens carry 192 random bits, so a plain digest is enough (no
password stretching) and the lookup by digest leaks nothing an attacker can steer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, replace

from gateway.core.errors import AuthFailed, Code, NotFound, ValidationFailed
from gateway.core.models import TokenInfo
from gateway.core.ports import Clock
from gateway.store import tokens as repo
from gateway.store.writer import Writer

log = logging.getLogger(__name__)

TOKEN_NAME = re.compile(r"[A-Za-z0-9 _.@:+-]{1,64}")
WINDOW_SECONDS = 120.0


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Issued:
    info: TokenInfo
    secret: str


class TokenService:
    def __init__(
        self, writer: Writer, clock: Clock, window_seconds: float = WINDOW_SECONDS
    ) -> None:
        self._writer = writer
        self._window_seconds = window_seconds
        self._clock = clock
        self._by_digest: dict[bytes, TokenInfo] = {}
        self._window_until = 0.0  # monotonic
        self._window_opened = asyncio.Event()
        self._dirty: set[int] = set()

    async def load(self) -> None:
        for d, info in await self._writer.run(repo.load_active):
            self._by_digest[d] = info

    # -- the button window --------------------------------------------------------------

    def open_window(self, seconds: float | None = None) -> float:
        seconds = self._window_seconds if seconds is None else seconds
        self._window_until = time.monotonic() + seconds
        self._window_opened.set()
        self._window_opened = asyncio.Event()
        log.info("token window open for %.0f s", seconds)
        return seconds

    def window_remaining(self) -> float:
        return max(0.0, self._window_until - time.monotonic())

    async def wait_for_window(self, seconds: float) -> bool:
        """Long-poll: True once the window is open, False after `seconds`."""
        if self.window_remaining() > 0:
            return True
        try:
            await asyncio.wait_for(self._window_opened.wait(), seconds)
        except TimeoutError:
            return False
        return True

    # -- tokens -------------------------------------------------------------------------

    @staticmethod
    def check_name(name: str | None) -> str:
        if name is None or not TOKEN_NAME.fullmatch(name):
            raise ValidationFailed(
                Code.TOKEN_BAD_NAME,
                "Invalid token name. Use 1 to 64 letters, digits, spaces or _.@:+-",
            )
        return name

    async def issue(self, name: str, ip_address: str | None) -> Issued:
        self.check_name(name)
        secret = secrets.token_hex(24)
        d = digest(secret)
        now = self._clock.now()
        info = await self._writer.run(
            lambda conn: repo.insert(conn, name, d, now, ip_address),
            lambda info: self._by_digest.__setitem__(d, info),
        )
        log.info("issued token %d (%s)", info.id, name)
        return Issued(info, secret)

    def authenticate(self, secret: str, ip_address: str | None = None) -> TokenInfo:
        d = digest(secret)
        info = self._by_digest.get(d)
        # The dict lookup already matched the digest; compare again in constant time so no
        # code path ever branches on a byte-by-byte comparison of secret material.
        if info is None or not hmac.compare_digest(d, digest(secret)):
            raise AuthFailed(Code.AUTH_INVALID)
        updated = replace(info, last_used=self._clock.now(), ip_address=ip_address)
        self._by_digest[d] = updated
        self._dirty.add(info.id)
        return updated

    def list(self) -> list[TokenInfo]:
        return sorted(self._by_digest.values(), key=lambda t: t.id)

    async def revoke(self, token_id: int) -> TokenInfo:
        found = [(d, t) for d, t in self._by_digest.items() if t.id == token_id]
        if not found:
            raise NotFound(Code.TOKEN_NOT_FOUND)
        d, info = found[0]
        now = self._clock.now()
        await self._writer.run(
            lambda conn: repo.revoke(conn, token_id, now),
            lambda _: self._by_digest.pop(d, None),
        )
        log.info("revoked token %d (%s)", info.id, info.name)
        return info

    async def flush_usage(self) -> None:
        """Persist last-used times in one write; per-request writes would cost an fsync each."""
        if not self._dirty:
            return
        ids, self._dirty = self._dirty, set()
        rows = [(t.last_used, t.ip_address, t.id) for t in self._by_digest.values() if t.id in ids]

        def job(conn: sqlite3.Connection) -> None:
            repo.touch(conn, rows)

        await self._writer.run(job)
