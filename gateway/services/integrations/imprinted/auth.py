"""Imprinted (seed 001) callers: apps (AppId + secret), signature verification, replay cache.

Two schemes, both over the raw bytes as received (never a re-serialization):

- **seed** — `Signature` (query) = hex SHA1(payload + secret), where the payload is the raw
  request body for POST, and for GET/DELETE the raw query string with the `Signature`
  parameter taken out (the other parameters stay exactly as sent, in their order).
- **hmac** — headers `X-Imprinted-Timestamp` (Unix seconds) and `X-Imprinted-Signature` =
  hex HMAC-SHA256(secret, "<timestamp>.<METHOD>.<path>." + payload): binds the method, the
  path and a time (±5 minutes), which the seed's scheme cannot.

Both compare in constant time. The seed's scheme needs the plaintext secret to recompute the
signature, so the secret is stored (`integration_keys.secret`); it is shown once at creation
and never logged. Signed POSTs go through a replay cache (`replay_cache`, 10 minutes, kept in
SQLite so it survives a restart): an identical signed POST inside the window is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Literal, NoReturn
from urllib.parse import unquote

from gateway.core.errors import AuthFailed, Code, NotFound, ValidationFailed
from gateway.core.ports import Clock
from gateway.services.access.tokens import AuthThrottle
from gateway.store import integration_keys as repo
from gateway.store.integration_keys import IntegrationKey
from gateway.store.writer import Writer

log = logging.getLogger(__name__)

KIND = "imprinted"
APP_NAME = re.compile(r"[A-Za-z0-9 _.@:+-]{1,64}")
APP_ID = re.compile(r"APP-[0-9A-F]{8}")
SHA1_HEX = re.compile(r"[0-9a-fA-F]{40}")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")
REPLAY_WINDOW = 600.0  # seconds a signed POST is remembered
CLOCK_SKEW = 300.0  # hmac scheme: how far the timestamp may be from our clock
PRUNE_EVERY = 60.0
TIMESTAMP_HEADER = "X-Imprinted-Timestamp"
SIGNATURE_HEADER = "X-Imprinted-Signature"
SIGNATURE_PARAM = "Signature"
APP_PARAM = "AppId"

Scheme = Literal["seed", "hmac"]


@dataclass(frozen=True, slots=True)
class App:
    """An app as listed (no secret)."""

    app_id: str
    name: str
    created: float
    revoked: float | None = None


@dataclass(frozen=True, slots=True)
class NewApp:
    app: App
    secret: str  # shown once


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a handler needs to know of a caller that passed verification."""

    app: App
    scheme: Scheme
    replay_key: bytes  # the digest a POST claims in the replay cache

    @property
    def source(self) -> str:
        """The order source of this app's orders."""
        return f"{KIND}:{self.app.app_id}"


@dataclass(frozen=True, slots=True)
class Claim:
    key: bytes
    seen: float


def split_query(raw_query: str) -> tuple[str, list[str], list[str]]:
    """(the query without its Signature parameters, the Signature values, the AppId values).

    Works on the raw text: the remaining parameters keep their bytes and their order, which is
    what the caller signed."""
    kept: list[str] = []
    signatures: list[str] = []
    app_ids: list[str] = []
    for part in raw_query.split("&") if raw_query else ():
        key, _, value = part.partition("=")
        name = unquote(key.replace("+", " "))
        if name == SIGNATURE_PARAM:
            signatures.append(unquote(value.replace("+", " ")))
            continue
        if name == APP_PARAM:
            app_ids.append(unquote(value.replace("+", " ")))
        kept.append(part)
    return "&".join(kept), signatures, app_ids


def seed_signature(payload: bytes, secret: str) -> str:
    return hashlib.sha1(payload + secret.encode(), usedforsecurity=False).hexdigest()


def hmac_signature(secret: str, timestamp: str, method: str, path: str, payload: bytes) -> str:
    message = f"{timestamp}.{method.upper()}.{path}.".encode() + payload
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class ImprintedAuth:
    def __init__(
        self,
        writer: Writer,
        clock: Clock,
        throttle: AuthThrottle | None = None,
        *,
        replay_window: float = REPLAY_WINDOW,
        clock_skew: float = CLOCK_SKEW,
    ) -> None:
        self._writer = writer
        self.clock = clock
        self.throttle = throttle or AuthThrottle()
        self.replay_window = replay_window
        self.clock_skew = clock_skew
        self._apps: dict[str, IntegrationKey] = {}  # active apps by AppId
        self._seen: dict[bytes, float] = {}  # replay cache, mirrored in SQLite
        self._last_prune = 0.0

    async def load(self) -> None:
        since = self.clock.now() - self.replay_window

        def read(
            conn: sqlite3.Connection,
        ) -> tuple[list[IntegrationKey], list[tuple[bytes, float]]]:
            return repo.load(conn, KIND), repo.replay_recent(conn, since)

        keys, seen = await self._writer.run(read)
        self._apps = {k.app_id: k for k in keys}
        self._seen = dict(seen)
        log.info("imprinted: %d apps, %d recent signatures", len(self._apps), len(self._seen))

    # -- apps ---------------------------------------------------------------------------

    async def create(self, name: object) -> NewApp:
        if not isinstance(name, str) or not APP_NAME.fullmatch(name):
            raise ValidationFailed(
                Code.TOKEN_BAD_NAME,
                "Invalid app name. Use 1 to 64 letters, digits, spaces or _.@:+-",
            )
        secret = secrets.token_hex(24)
        now = self.clock.now()

        def job(conn: sqlite3.Connection) -> IntegrationKey:
            for _ in range(20):
                app_id = f"APP-{secrets.token_hex(4).upper()}"
                try:
                    return repo.insert(conn, KIND, name, app_id, created=now, secret=secret)
                except sqlite3.IntegrityError:
                    continue
            raise RuntimeError("could not find a free AppId")

        key = await self._writer.run(job, self._remember)
        log.info("imprinted app %s (%s) created", key.app_id, key.name)
        return NewApp(_app(key), secret)

    def _remember(self, key: IntegrationKey) -> None:
        self._apps[key.app_id] = key

    def list(self) -> list[App]:
        return [_app(k) for k in sorted(self._apps.values(), key=lambda k: k.id)]

    async def revoke(self, app_id: str) -> App:
        if app_id not in self._apps:
            raise NotFound(Code.TOKEN_NOT_FOUND, f"No active app {app_id[:40]!r}.")
        now = self.clock.now()

        def forget(_: IntegrationKey | None) -> None:
            self._apps.pop(app_id, None)

        key = await self._writer.run(lambda conn: repo.revoke(conn, KIND, app_id, now), forget)
        if key is None:
            raise NotFound(Code.TOKEN_NOT_FOUND, f"No active app {app_id[:40]!r}.")
        log.info("imprinted app %s (%s) revoked", key.app_id, key.name)
        return _app(key)

    # -- verification ---------------------------------------------------------------------

    def verify(
        self,
        *,
        method: str,
        path: str,
        raw_query: str,
        body: bytes,
        headers: dict[str, str],
        client: str | None,
    ) -> SignedRequest:
        """Check the caller; raises AuthFailed: AUTH_MALFORMED (401: something missing),
        AUTH_INVALID / STALE_TIMESTAMP (403: present but wrong), TOO_MANY_FAILURES (429: wrong,
        from an address with too many failures; a valid signature is served all the same)."""
        signed_query, signatures, app_ids = split_query(raw_query)
        if not app_ids:
            raise AuthFailed(Code.AUTH_MALFORMED, "Missing AppId parameter.")
        if len(app_ids) > 1:
            raise AuthFailed(Code.AUTH_MALFORMED, "AppId is given more than once.")
        payload = (
            body if method.upper() == "POST" else signed_query.encode("utf-8", "surrogatepass")
        )
        header_sig = headers.get(SIGNATURE_HEADER)
        if header_sig is not None:
            return self._verify_hmac(
                app_ids[0], header_sig, headers.get(TIMESTAMP_HEADER), method, path, payload, client
            )
        if not signatures:
            raise AuthFailed(Code.AUTH_MALFORMED, "Missing Signature parameter.")
        if len(signatures) > 1:
            raise AuthFailed(Code.AUTH_MALFORMED, "Signature is given more than once.")
        given = signatures[0]
        key = self._apps.get(app_ids[0])
        if (
            key is None
            or key.secret is None
            or not SHA1_HEX.fullmatch(given)
            or not hmac.compare_digest(
                seed_signature(payload, key.secret).encode(), given.lower().encode()
            )
        ):
            self._failed(client)
        return SignedRequest(_app(key), "seed", _replay_key(key.app_id, "seed", given))

    def _verify_hmac(
        self,
        app_id: str,
        given: str,
        timestamp: str | None,
        method: str,
        path: str,
        payload: bytes,
        client: str | None,
    ) -> SignedRequest:
        if timestamp is None:
            raise AuthFailed(Code.AUTH_MALFORMED, f"Missing {TIMESTAMP_HEADER} header.")
        if not TIMESTAMP.fullmatch(timestamp):
            self.throttle.failed(client)
            raise AuthFailed(
                Code.STALE_TIMESTAMP, f"{TIMESTAMP_HEADER} must be Unix seconds (digits)."
            )
        key = self._apps.get(app_id)
        if (
            key is None
            or key.secret is None
            or not SHA256_HEX.fullmatch(given)
            or not hmac.compare_digest(
                hmac_signature(key.secret, timestamp, method, path, payload).encode(),
                given.lower().encode(),
            )
        ):
            self._failed(client)
        if abs(self.clock.now() - int(timestamp)) > self.clock_skew:
            raise AuthFailed(
                Code.STALE_TIMESTAMP,
                f"{TIMESTAMP_HEADER} is more than {int(self.clock_skew)} s away "
                "from the gateway's clock.",
            )
        return SignedRequest(_app(key), "hmac", _replay_key(key.app_id, "hmac", given))

    def _failed(self, client: str | None) -> NoReturn:
        self.throttle.failed(client)
        # One answer for an unknown AppId and a wrong signature: nothing to enumerate.
        raise AuthFailed(Code.AUTH_INVALID, "Invalid AppId or Signature.")

    # -- replay cache -----------------------------------------------------------------------

    async def claim(self, signed: SignedRequest) -> Claim:
        """Remember a signed POST before it takes effect; a second one inside the window is
        refused (403 REPLAYED). Checked and taken in memory without an await in between, so
        two identical requests racing cannot both pass; then made durable."""
        now = self.clock.now()
        key = signed.replay_key
        earlier = self._seen.get(key)
        if earlier is not None and now - earlier < self.replay_window:
            raise AuthFailed(
                Code.REPLAYED,
                "This signed request was already received; a replay is refused. "
                "Send a new request (see docs: retries and external_id).",
            )
        self._seen[key] = now
        prune = now - self._last_prune >= PRUNE_EVERY
        if prune:
            self._last_prune = now
            cutoff = now - self.replay_window
            self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}
            self._seen[key] = now

        def job(conn: sqlite3.Connection) -> bool:
            if prune:
                repo.replay_prune(conn, now - self.replay_window)
            return repo.replay_claim(conn, key, now, now - self.replay_window)

        try:
            fresh = await self._writer.run(job)
        except BaseException:
            self._seen.pop(key, None)
            raise
        if not fresh:  # only possible if memory and SQLite disagree; SQLite wins
            raise AuthFailed(Code.REPLAYED, "This signed request was already received.")
        return Claim(key, now)

    async def release(self, claim: Claim) -> None:
        """The claimed request failed without effect: a retry of it is not a replay."""
        if self._seen.get(claim.key) == claim.seen:
            del self._seen[claim.key]
        await self._writer.run(lambda conn: repo.replay_release(conn, claim.key, claim.seen))


def _replay_key(app_id: str, scheme: str, signature: str) -> bytes:
    return hashlib.sha256(f"{KIND}:{app_id}:{scheme}:{signature.lower()}".encode()).digest()


def _app(key: IntegrationKey) -> App:
    return App(key.app_id, key.name, key.created, key.revoked)
