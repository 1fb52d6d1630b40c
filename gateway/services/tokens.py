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
from collections.abc import Callable
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


class AuthThrottle:
    """S5: a client address that fails authentication `limit` times within `window` seconds is
    refused (429) for `window` seconds, whatever it sends; other clients are not affected.
    Guessing a 192-bit token is hopeless anyway; this keeps a broken or hostile client from
    filling logs and CPU."""

    def __init__(self, limit: int = 20, window: float = 60.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.now = now
        self._failures: dict[str, list[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def check(self, client: str | None) -> None:
        until = self._blocked_until.get(client or "")
        if until is not None:
            if self.now() < until:
                raise AuthFailed(Code.TOO_MANY_FAILURES)
            del self._blocked_until[client or ""]

    def failed(self, client: str | None) -> None:
        key = client or ""
        now = self.now()
        recent = [t for t in self._failures.get(key, ()) if now - t < self.window]
        recent.append(now)
        if len(recent) >= self.limit:
            self._blocked_until[key] = now + self.window
            self._failures.pop(key, None)
            log.warning("client %s blocked for %.0f s after %d failed authentications",
                        key or "?", self.window, len(recent))
            return
        self._failures[key] = recent
        if len(self._failures) > 10_000:  # bounded: forget the oldest clients first
            self._failures.pop(next(iter(self._failures)))


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
        self.throttle = AuthThrottle()
        self._digest_of: dict[int, bytes] = {}
        self._usage: dict[int, tuple[float, str | None]] = {}  # id -> (last used, from where)

    async def load(self) -> None:
        for d, info in await self._writer.run(repo.load_active):
            self._remember(d, info)

    def _remember(self, d: bytes, info: TokenInfo) -> None:
        self._by_digest[d] = info
        self._digest_of[info.id] = d

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
            lambda info: self._remember(d, info),
        )
        log.info("issued token %d (%s)", info.id, name)
        return Issued(info, secret)

    def authenticate(self, secret: str, ip_address: str | None = None) -> TokenInfo:
        self.throttle.check(ip_address)
        d = digest(secret)
        info = self._by_digest.get(d)
        if info is None:
            self.throttle.failed(ip_address)
            raise AuthFailed(Code.AUTH_INVALID)
        # The lookup matched on the digest of a 192-bit secret; comparing the digests again in
        # constant time keeps any byte-by-byte comparison of secret material off every path.
        if not hmac.compare_digest(d, self._digest_of[info.id]):
            raise AuthFailed(Code.AUTH_INVALID)
        self._usage[info.id] = (self._clock.now(), ip_address)
        return info

    def list(self) -> list[TokenInfo]:
        return sorted((self._with_usage(t) for t in self._by_digest.values()), key=lambda t: t.id)

    def _with_usage(self, info: TokenInfo) -> TokenInfo:
        used = self._usage.get(info.id)
        return info if used is None else replace(info, last_used=used[0], ip_address=used[1])

    async def revoke(self, token_id: int) -> TokenInfo:
        d = self._digest_of.get(token_id)
        if d is None:
            raise NotFound(Code.TOKEN_NOT_FOUND)
        info = self._by_digest[d]
        now = self._clock.now()

        def forget(_: None) -> None:
            self._by_digest.pop(d, None)
            self._digest_of.pop(token_id, None)
            self._usage.pop(token_id, None)

        await self._writer.run(lambda conn: repo.revoke(conn, token_id, now), forget)
        log.info("revoked token %d (%s)", info.id, info.name)
        return info

    async def flush_usage(self) -> None:
        """Persist last-used times in one write; per-request writes would cost an fsync each."""
        if not self._usage:
            return
        usage, self._usage = self._usage, {}
        rows = [(when, ip, token_id) for token_id, (when, ip) in usage.items()]

        def job(conn: sqlite3.Connection) -> None:
            repo.touch(conn, rows)

        def fold_in(_: None) -> None:
            # Stored: make them the tokens' own values, unless a newer use came in meanwhile.
            for token_id, (when, ip) in usage.items():
                d = self._digest_of.get(token_id)
                if d is not None:
                    self._by_digest[d] = replace(self._by_digest[d], last_used=when, ip_address=ip)

        await self._writer.run(job, fold_in)
