"""One outbox request on the wire: the HTTP session (DNS under the guard, no cookies), the
signatures, and the cancellation that `close()` may bring to a request in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from gateway.core.ports import Clock
from gateway.services.outbox.http import NETWORK, Answer, GuardedResolver, post
from gateway.store.outbox import OutboxRow

# The seam for Standard Webhooks signatures: (row, unix timestamp) -> extra headers, e.g.
# webhook-timestamp and webhook-signature over f"{row.event_id}.{timestamp}.{row.body}".
Signer = Callable[[OutboxRow, int], Mapping[str, str]]


class Sender:
    def __init__(
        self,
        clock: Clock,
        allow: frozenset[str],
        timeout: float,
        signer: Signer | None,
        resolver: AbstractResolver | None,
    ) -> None:
        self._clock = clock
        self._allow = allow
        self._timeout = timeout
        self._signer = signer  # for kinds without their own
        self._signers: dict[str, Signer] = {}
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        # Tasks inside a request -> whether `abandon_all` cancelled that request.
        self._requests: dict[asyncio.Task[Any], bool] = {}

    def register_signer(self, kind: str, signer: Signer) -> None:
        if kind in self._signers:
            raise ValueError(f"a signer for {kind!r} is already registered")
        self._signers[kind] = signer

    def open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(self._allow, self._resolver)),
            cookie_jar=aiohttp.DummyCookieJar(),  # receivers must not steer later requests
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )

    def abandon_all(self) -> None:
        """Cancel every request in flight; each `send` in progress returns None."""
        for task in list(self._requests):
            self._requests[task] = True
            task.cancel()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, row: OutboxRow) -> Answer | None:
        """One request; None if `abandon_all` abandoned it."""
        headers = {"Content-Type": row.content_type, "webhook-id": row.event_id}
        signer = self._signers.get(row.kind, self._signer)
        try:
            if signer is not None:
                headers.update(signer(row, int(self._clock.now())))
        except Exception as exc:  # a signer bug: a failed attempt, not a dead worker
            return Answer(None, code=NETWORK, message=f"signing failed: {type(exc).__name__}")
        assert self._session is not None
        # Awaited in the caller's own task (a task per request costs a third of the loop's
        # time per delivery); `abandon_all` cancels the tasks that are inside a request, and
        # only those cancellations are swallowed here.
        task = asyncio.current_task()
        assert task is not None
        self._requests[task] = False
        try:
            return await post(
                self._session, row.url, row.body, headers, self._clock.now(), self._timeout
            )
        except asyncio.CancelledError:
            if self._requests.get(task):  # cancelled by close(): the row stays pending
                task.uncancel()
                return None
            raise
        finally:
            self._requests.pop(task, None)
