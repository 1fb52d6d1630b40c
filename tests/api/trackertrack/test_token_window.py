"""Issue 9, item 3: one press of the button hands out a bounded number of tokens, and the
long-polls waiting for a press are capped."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from typing import Any

import pytest

from gateway.core.errors import AuthFailed, Code, Unavailable

GEN = "/api/v2/accesstoken/generate"


async def _until(condition: Any, seconds: float = 5.0) -> None:
    """Bounded wait for a condition of the server's state (liveness, not timing)."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)


def _waiting(gateway: Any) -> int:
    return int(getattr(gateway.tokens, "waiting", 0))


async def _answer(resp: Any) -> tuple[int, int]:
    return resp.status, (await resp.json())["returnCode"]


async def _stored_tokens(gateway: Any) -> int:
    return len(gateway.tokens.list())


async def test_50_long_polls_and_one_press_get_at_most_the_quota(client: Any, gateway: Any) -> None:
    gateway.tokens.max_waiting = 64  # this test is about the quota, not the waiting cap
    polls = [asyncio.ensure_future(client.get(f"{GEN}?name=pos-{i}&timeout=30")) for i in range(50)]
    await _until(lambda: _waiting(gateway) == 50)
    gateway.ctx.tokens.open_window()
    answers = Counter(
        [await _answer(r) for r in await asyncio.wait_for(asyncio.gather(*polls), 20)]
    )
    assert answers == {(201, 2): 5, (403, -3): 45}
    assert await _stored_tokens(gateway) == 5


async def test_one_press_gives_one_token_per_name(client: Any, gateway: Any) -> None:
    polls = [asyncio.ensure_future(client.get(f"{GEN}?name=pos&timeout=30")) for _ in range(8)]
    await _until(lambda: _waiting(gateway) == 8)
    gateway.ctx.tokens.open_window()
    answers = Counter(
        [await _answer(r) for r in await asyncio.wait_for(asyncio.gather(*polls), 20)]
    )
    assert answers == {(201, 2): 1, (403, -3): 7}
    # Case does not make a new name; the window still has room for other names.
    resp = await client.get(f"{GEN}?name=POS")
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (403, -3)
    assert "'POS' was already issued" in body["message"]
    assert (await client.get(f"{GEN}?name=kitchen")).status == 201
    assert await _stored_tokens(gateway) == 2


async def test_used_window_answers_closed_and_a_new_press_resets_it(
    client: Any, gateway: Any
) -> None:
    gateway.ctx.tokens.open_window()
    for i in range(5):
        assert (await client.get(f"{GEN}?name=c{i}")).status == 201
    resp = await client.get(f"{GEN}?name=c5")
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (403, -3)
    assert body["message"].startswith("Token window used up")
    assert gateway.tokens.window_remaining() == 0
    gateway.ctx.tokens.open_window()
    assert (await client.get(f"{GEN}?name=c0")).status == 201  # a new press, a new quota
    assert await _stored_tokens(gateway) == 6


async def test_long_polls_beyond_the_cap_are_refused_at_once(client: Any, gateway: Any) -> None:
    assert gateway.tokens.max_waiting == 8  # the default
    polls = [asyncio.ensure_future(client.get(f"{GEN}?name=p{i}&timeout=30")) for i in range(8)]
    await _until(lambda: _waiting(gateway) == 8)
    # The ninth is answered now (not queued until its timeout), in the table-tracker envelope.
    resp = await asyncio.wait_for(client.get(f"{GEN}?name=late&timeout=30"), 5)
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (503, -45)
    assert int(resp.headers["Retry-After"]) > 0
    assert _waiting(gateway) == 8
    gateway.ctx.tokens.open_window()
    answers = Counter(
        [await _answer(r) for r in await asyncio.wait_for(asyncio.gather(*polls), 20)]
    )
    assert answers == {(201, 2): 5, (403, -3): 3}
    assert _waiting(gateway) == 0


async def test_waiting_long_polls_are_served_first_come(gateway: Any) -> None:
    tokens = gateway.tokens
    tasks = []
    for i in range(8):
        tasks.append(asyncio.ensure_future(tokens.issue_in_window(f"c{i}", None, wait=10)))
        await asyncio.sleep(0)  # c{i} starts waiting before c{i+1}
    await _until(lambda: tokens.waiting == 8)
    tokens.open_window()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert [r.info.name for r in results[:5]] == [f"c{i}" for i in range(5)]  # type: ignore[union-attr]
    assert all(isinstance(r, AuthFailed) and r.code is Code.TOKEN_WINDOW_USED for r in results[5:])


async def test_a_failed_mint_does_not_spend_the_quota(gateway: Any, monkeypatch: Any) -> None:
    tokens = gateway.tokens
    tokens.max_tokens = 1
    tokens.open_window()
    real = tokens.issue

    async def broken(name: str, ip: str | None) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(tokens, "issue", broken)
    with pytest.raises(sqlite3.OperationalError):
        await tokens.issue_in_window("pos", None)
    monkeypatch.setattr(tokens, "issue", real)
    assert (await tokens.issue_in_window("pos", None)).info.name == "pos"


async def test_waiting_cap_and_timeout_at_service_level(gateway: Any) -> None:
    tokens = gateway.tokens
    tokens.max_waiting = 1
    first = asyncio.ensure_future(tokens.issue_in_window("a", None, wait=0.3))
    await _until(lambda: tokens.waiting == 1)
    with pytest.raises(Unavailable) as refused:
        await tokens.issue_in_window("b", None, wait=5)
    assert refused.value.code is Code.TOKEN_TOO_MANY_WAITING
    with pytest.raises(AuthFailed) as timed_out:
        await asyncio.wait_for(first, 5)
    assert timed_out.value.code is Code.TOKEN_WAIT_TIMEOUT
    assert tokens.waiting == 0


def test_window_settings_have_bounds() -> None:
    from gateway.settings import SettingsError, load_settings

    s = load_settings(None)
    assert (s.token_window_per_name, s.token_window_max_tokens, s.token_window_max_waiting) == (
        1,
        5,
        8,
    )
    for key in ("token_window_per_name", "token_window_max_tokens", "token_window_max_waiting"):
        with pytest.raises(SettingsError, match=key):
            load_settings(None, **{key: 0})


async def test_a_mint_failing_across_a_press_leaves_the_new_quota_alone(
    gateway: Any, monkeypatch: Any
) -> None:
    tokens = gateway.tokens
    tokens.max_tokens = 1
    tokens.open_window()
    real = tokens.issue

    async def pressed_then_broken(name: str, ip: str | None) -> Any:
        tokens.open_window()  # someone presses while this mint is in flight
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(tokens, "issue", pressed_then_broken)
    with pytest.raises(sqlite3.OperationalError):
        await tokens.issue_in_window("pos", None)
    monkeypatch.setattr(tokens, "issue", real)
    assert (await tokens.issue_in_window("a", None)).info.name == "a"
    with pytest.raises(AuthFailed) as used:
        await tokens.issue_in_window("b", None)
    assert used.value.code is Code.TOKEN_WINDOW_USED
