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
from collections.abc import Callable
from dataclasses import dataclass, replace

from gateway.core.errors import AuthFailed, Code, NotFound, Unavailable, ValidationFailed
from gateway.core.models import TokenInfo
from gateway.core.ports import Clock, SystemClock
from gateway.store import tokens as repo
from gateway.store.writer import Writer

log = logging.getLogger(__name__)

TOKEN_NAME = re.compile(r"[A-Za-z0-9 _.@:+-]{1,64}")
WINDOW_SECONDS = 120.0


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


class AuthThrottle:
    """Reliability gate S5 (failed-auth rate limit): a client address that fails authentication
    `limit` times within `window` seconds is blocked for `window` seconds: its WRONG credentials
    then get 429 instead of 401. A valid credential is always served: callers check it first and
    report only failures here, so a broken POS with a stale token cannot lock out the kitchen
    display behind the same NAT. Guessing a 192-bit token is hopeless anyway; this keeps a broken
    or hostile client from filling logs. Memory is bounded: at most `max_clients` addresses are
    tracked."""

    def __init__(
        self,
        limit: int = 20,
        window: float = 60.0,
        now: Callable[[], float] | None = None,
        max_clients: int = 10_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self.now = now or SystemClock().monotonic  # tests pass a stepped one
        self.max_clients = max_clients
        self._failures: dict[str, list[float]] = {}  # least recently failed first
        self._blocked_until: dict[str, float] = {}  # earliest expiry first (same window)

    def blocked(self, client: str | None) -> bool:
        until = self._blocked_until.get(client or "")
        return until is not None and self.now() < until

    def failed(self, client: str | None) -> None:
        """Count one failed authentication; raises TOO_MANY_FAILURES if the client was
        already blocked (the failure that reaches the limit itself still gets its 401)."""
        key = client or ""
        now = self.now()
        until = self._blocked_until.get(key)
        if until is not None:
            if now < until:
                raise AuthFailed(Code.TOO_MANY_FAILURES)
            del self._blocked_until[key]
        recent = [t for t in self._failures.pop(key, ()) if now - t < self.window]
        recent.append(now)
        if len(recent) >= self.limit:
            self._block(key, now)
            log.warning(
                "client %s blocked for %.0f s after %d failed authentications",
                key or "?",
                self.window,
                len(recent),
            )
            return
        self._failures[key] = recent  # re-inserted: the dict stays in least-recent order
        if len(self._failures) > self.max_clients:
            self._failures.pop(next(iter(self._failures)))

    def _block(self, key: str, now: float) -> None:
        self._blocked_until[key] = now + self.window
        # Every block lasts `window`, so insertion order is expiry order: drop expired ones
        # from the front, then the oldest if many addresses are blocked at once.
        while self._blocked_until:
            first = next(iter(self._blocked_until))
            if self._blocked_until[first] > now and len(self._blocked_until) <= self.max_clients:
                break
            del self._blocked_until[first]

    def tracked(self) -> int:
        return len(self._failures) + len(self._blocked_until)


@dataclass(frozen=True, slots=True)
class Issued:
    info: TokenInfo
    secret: str


class TokenService:
    def __init__(
        self,
        writer: Writer,
        clock: Clock,
        window_seconds: float = WINDOW_SECONDS,
        *,
        per_name: int = 1,
        max_tokens: int = 5,
        max_waiting: int = 8,
    ) -> None:
        self._writer = writer
        self._window_seconds = window_seconds
        self._clock = clock
        self._by_digest: dict[bytes, TokenInfo] = {}
        self._window_until = 0.0  # monotonic
        self._window_opened = asyncio.Event()
        # One press hands out at most `max_tokens` tokens, `per_name` per name: a page on the
        # LAN (or anyone) long-polling many times cannot collect a token per request.
        self.per_name = per_name
        self.max_tokens = max_tokens
        self.max_waiting = max_waiting
        self._issued_total = 0
        self._issued_by_name: dict[str, int] = {}  # at most max_tokens keys
        self._presses = 0
        self._waiting = 0
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
        """A press: opens the window with a fresh quota and wakes the waiting long-polls."""
        seconds = self._window_seconds if seconds is None else seconds
        self._window_until = self._clock.monotonic() + seconds
        self._issued_total = 0
        self._issued_by_name.clear()
        self._presses += 1
        self._window_opened.set()
        self._window_opened = asyncio.Event()
        log.info("token window open for %.0f s (at most %d tokens)", seconds, self.max_tokens)
        return seconds

    def window_remaining(self) -> float:
        """Seconds the window stays open; 0 once it expired or its quota is used up."""
        if self._issued_total >= self.max_tokens:
            return 0.0
        return max(0.0, self._window_until - self._clock.monotonic())

    @property
    def waiting(self) -> int:
        return self._waiting

    async def issue_in_window(
        self, name: str, ip_address: str | None, wait: float | None = None
    ) -> Issued:
        """GET …/generate: a token if the window is open and its quota allows; with `wait`,
        first wait up to that many seconds for a press (long poll)."""
        self.check_name(name)
        if wait is not None and self.window_remaining() <= 0:
            await self._wait_for_press(wait)
        # Claimed before the first await of the mint: the waiters a press wakes resume in the
        # order they started waiting, so the quota goes to them first-come.
        key, press = self._claim(name), self._presses
        try:
            return await self.issue(name, ip_address)
        except BaseException:
            if press == self._presses:  # nothing was stored: this press's quota is not spent
                self._issued_total -= 1
                self._issued_by_name[key] -= 1
            raise

    async def _wait_for_press(self, seconds: float) -> None:
        if self._waiting >= self.max_waiting:
            raise Unavailable(Code.TOKEN_TOO_MANY_WAITING)
        self._waiting += 1
        try:
            async with asyncio.timeout(seconds):
                await self._window_opened.wait()
        except TimeoutError:
            raise AuthFailed(Code.TOKEN_WAIT_TIMEOUT) from None
        finally:
            self._waiting -= 1

    def _claim(self, name: str) -> str:
        if self.window_remaining() <= 0:
            used_up = self._issued_total >= self.max_tokens
            if used_up and self._clock.monotonic() < self._window_until:
                raise AuthFailed(Code.TOKEN_WINDOW_USED)
            raise AuthFailed(Code.TOKEN_WINDOW_CLOSED)
        key = name.casefold()
        if self._issued_by_name.get(key, 0) >= self.per_name:
            raise AuthFailed(
                Code.TOKEN_WINDOW_USED,
                f"A token named {name!r} was already issued in this window: "
                "press the gateway button again.",
            )
        self._issued_total += 1
        self._issued_by_name[key] = self._issued_by_name.get(key, 0) + 1
        return key

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
        """The credential is checked first: a blocked address still gets a valid token
        served, and only a wrong one is answered 429 (TOO_MANY_FAILURES)."""
        d = digest(secret)
        info = self._by_digest.get(d)
        # The lookup matched on the digest of a 192-bit secret; comparing the digests again in
        # constant time keeps any byte-by-byte comparison of secret material off every path.
        if info is None or not hmac.compare_digest(d, self._digest_of[info.id]):
            self.throttle.failed(ip_address)
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
