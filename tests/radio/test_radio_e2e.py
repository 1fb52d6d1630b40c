"""End to end: simulated trackers, through the real parsers (advertisements into the scanner's
entry point, pad lines over real pty pairs into the serial links), drive orders through
started -> located -> paged -> cleared, and every step reaches the WebSocket feed."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from gateway.app import build
from gateway.compose.radio import start_radio
from tests.conftest import make_settings


def _seconds(a: str, b: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%S"
    return (datetime.strptime(b, fmt) - datetime.strptime(a, fmt)).total_seconds()


@pytest.mark.slow
async def test_simulated_restaurant_drives_the_feed(tmp_path: Any, aiohttp_client: Any) -> None:
    settings = make_settings(
        tmp_path / "d", simulator=True, simulator_speed=8.0, simulator_seed=7, debounce_seconds=0.2
    )
    gw = await build(settings)
    radio = await start_radio(gw.core, gw.supervisor)
    client = await aiohttp_client(gw.app)
    secret = (await gw.tokens.issue("kds", None)).secret
    auth = {"Authorization": f"Bearer {secret}"}
    ws = await client.ws_connect("/api/v2/websocket", headers=auth)
    assert (await ws.receive_json())["type"] == "ACTIVE_ORDERS"
    by_uuid: dict[str, list[dict[str, Any]]] = {}
    paged: set[str] = set()
    seqs: list[int] = []

    def done() -> tuple[str | None, str | None]:
        dine = togo = None
        for uuid, frames in by_uuid.items():
            kinds = [f["type"] for f in frames]
            if kinds[0] != "NEW_ORDER" or kinds[-1] != "ORDER_CLEARED":
                continue
            if frames[0]["orderType"] == "ON_PREMISES" and any(
                f["state"] == "located" for f in frames
            ):
                dine = uuid
            if "ORDER_PAGED" in kinds and any(
                f["type"] == "ORDER_MODIFIED" and not f["paged"] for f in frames
            ):
                togo = uuid
        return dine, togo

    try:
        async with asyncio.timeout(40):
            while not all(done()):
                frame = await ws.receive_json()
                seqs.append(frame["seq"])
                by_uuid.setdefault(frame["uuid"], []).append(frame)
                # The kitchen: a to-go order is ready as soon as it starts.
                if frame["type"] == "NEW_ORDER" and frame["orderType"] == "TO_GO" and not paged:
                    paged.add(frame["uuid"])
                    resp = await client.post(
                        f"/api/v2/activeorders/{frame['uuid']}/page",
                        json={"tracking": True},
                        headers=auth,
                    )
                    assert (await resp.json())["returnCode"] == 1014
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap on the feed
        dine, togo = done()
        assert dine is not None and togo is not None
        history = await (await client.get("/api/v2/orders?limit=100", headers=auth)).json()
        rows = {o["uuid"]: o for o in history["items"]}
        frames = by_uuid[dine]
        located = next(f for f in frames if f["state"] == "located")
        cleared = frames[-1]
        row = rows[dine]
        assert row["clearReason"] == "TRACKER"
        assert abs(row["timeToSit"] - _seconds(frames[0]["created"], located["stateChanged"])) <= 1
        assert (
            abs(row["deliveryTime"] - _seconds(frames[0]["created"], cleared["stateChanged"])) <= 1
        )
        assert rows[togo]["clearReason"] == "TRACKER"
        assert rows[togo]["timeToSit"] is None  # a to-go guest never sits
    finally:
        await ws.close()
        await radio.stop()
