"""The Imprimo dialect (seed 000) under /api/dev/: devices, print requests, the error envelope.

Printers here are unreachable on purpose (a closed local port, or a virtual printer that does
not run): the API is under test, not printing. The full print → accept/refuse flow with a
printer that answers belongs to the print worker's tests.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.core.errors import Code, GatewayError, Unavailable
from gateway.core.printing import ProcessStatus
from gateway.settings import Settings
from tests.conftest import make_settings
from web.api.imprimo import handlers as imprimo_handlers
from web.api.imprimo import schemas as si
from web.dialect import DIALECTS_KEY, Dialects
from web.envelope import ERRORS, IMPRIMO_ERRORS, envelope_middleware
from web.server import DIALECTS

Client = TestClient[web.Request, web.Application]
DEV = "/api/dev/devices/"

DEVICE_KEYS = {
    "id",
    "dateCreated",
    "status",
    "statusDate",
    "isOnline",
    "dateLastSeen",
    "password",
    "phoneNumber",
}
DEVICE_EXTENSIONS = {"name", "station", "statusDetail"}
REQUEST_KEYS = {
    "id",
    "dateCreated",
    "deadline",
    "reserved",
    "process",
    "input",
    "output",
    "error",
    "report",
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(name="settings")
def loopback_settings(tmp_path: Path) -> Settings:  # conftest's, with loopback printers allowed
    return make_settings(tmp_path / "data", outbound_allow=["127.0.0.1"])


async def add_printer(client: Client, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"name": "Kitchen", "address": f"tcp://127.0.0.1:{closed_port()}", **fields}
    resp = await client.post(DEV, json=body, headers=auth)
    payload = await resp.json()
    assert resp.status == 201, payload
    assert payload["success"] is True
    return payload["device"]  # type: ignore[no-any-return]


@pytest.fixture
async def printer(client: Client, auth: dict[str, str]) -> str:
    return str((await add_printer(client, auth, id="kitchen1"))["id"])


def requests_url(device_id: str) -> str:
    return f"{DEV}{device_id}/requests/"


async def submit(
    client: Client, auth: dict[str, str], device_id: str, body: Any
) -> tuple[int, dict[str, Any]]:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
    resp = await client.post(requests_url(device_id), headers=auth, **kwargs)
    return resp.status, await resp.json()


async def request_total(client: Client, auth: dict[str, str], device_id: str) -> int:
    resp = await client.get(requests_url(device_id), headers=auth)
    assert resp.status == 200
    return int((await resp.json())["requests"]["total"])


def assert_error(status: int, body: dict[str, Any], expect: int, fragment: str = "") -> None:
    assert status == expect, body
    assert set(body) == {"success", "error"}, body
    assert body["success"] is False and isinstance(body["error"], str) and body["error"]
    assert fragment in body["error"], body


# -- devices ----------------------------------------------------------------------------------


async def test_device_has_the_seed_properties(client: Client, auth: dict[str, str]) -> None:
    created = await add_printer(client, auth, id="abc12345", station="bar", paper="58mm")
    assert set(created) == DEVICE_KEYS | DEVICE_EXTENSIONS
    resp = await client.get(f"{DEV}abc12345", headers=auth)
    body = await resp.json()
    assert resp.status == 200 and body["success"] is True and set(body) == {"success", "device"}
    device = si.ImprimoDevice.model_validate(body["device"]).model_dump()
    assert device["id"] == "abc12345" and device["name"] == "Kitchen"
    assert device["station"] == "bar"
    assert isinstance(device["dateCreated"], int) and abs(device["dateCreated"] - time.time()) < 5
    assert isinstance(device["isOnline"], bool)
    assert device["password"] is None and device["phoneNumber"] is None
    assert device["status"] in {
        None,
        "unknown",
        "out-of-paper",
        "idle",
        "printing",
        "waiting-order-response",
    }


async def test_devices_are_paged_with_next_count_and_total(
    client: Client, auth: dict[str, str], gateway: Gateway
) -> None:
    ids = {(await add_printer(client, auth, id=f"p{n}"))["id"] for n in range(5)}
    seen: list[str] = []
    url: str | None = f"{DEV}?limit=2"
    pages = 0
    while url is not None:
        resp = await client.get(url, headers=auth)
        body = (await resp.json())["devices"]
        assert resp.status == 200 and body["total"] == 5
        assert body["count"] == len(body["items"]) <= 2
        seen += [d["id"] for d in body["items"]]
        url = body["next"]
        pages += 1
    assert pages == 3 and set(seen) == ids and len(seen) == 5
    first = await (await client.get(f"{DEV}?limit=2", headers=auth)).json()
    assert first["devices"]["next"] == "/api/dev/devices/?limit=2&offset=2"
    last = await (await client.get(f"{DEV}?limit=2&offset=4", headers=auth)).json()
    assert last["devices"]["next"] is None and last["devices"]["count"] == 1
    beyond = await (await client.get(f"{DEV}?offset=99", headers=auth)).json()
    assert beyond["devices"] == {"next": None, "count": 0, "total": 5, "items": []}


async def test_limit_is_capped_at_100(
    client: Client, auth: dict[str, str], gateway: Gateway
) -> None:
    from gateway.core.printing import Source
    from gateway.services.printing.service import DeviceSpec

    for n in range(105):  # a virtual printer that does not run: no network at all
        await gateway.printing.add_device(
            DeviceSpec(f"P{n}", "virtual://none", id=f"v{n}"), Source.API
        )
    default = await (await client.get(DEV, headers=auth)).json()
    assert default["devices"]["count"] == 100 and default["devices"]["total"] == 105
    assert default["devices"]["next"] == "/api/dev/devices/?limit=100&offset=100"
    for limit in ("101", "500", "0100", "9" * 40):
        capped = await (await client.get(f"{DEV}?limit={limit}", headers=auth)).json()
        assert capped["devices"]["count"] == 100, limit
        assert capped["devices"]["next"] == "/api/dev/devices/?limit=100&offset=100"
    rest = await (await client.get(default["devices"]["next"], headers=auth)).json()
    assert rest["devices"]["count"] == 5 and rest["devices"]["next"] is None


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("limit=0", "limit must be a positive integer"),
        ("limit=-1", "limit"),
        ("limit=abc", "'abc'"),
        ("limit=", "limit"),
        ("limit=1.5", "limit"),
        ("limit=%C2%B2", "limit"),
        ("limit=+5", "limit"),
        ("offset=-1", "offset must be an integer from 0"),
        ("offset=x", "offset"),
        ("offset=1000000001", "offset"),
        ("offset=" + "9" * 5000, "offset"),
    ],
)
async def test_bad_paging_is_400(
    client: Client, auth: dict[str, str], printer: str, query: str, fragment: str
) -> None:
    for base in (DEV, requests_url(printer)):
        resp = await client.get(f"{base}?{query}", headers=auth)
        assert_error(resp.status, await resp.json(), 400, fragment)


async def test_add_device_defaults_and_refusals(client: Client, auth: dict[str, str]) -> None:
    made = await add_printer(client, auth)
    assert (
        len(made["id"]) == 16
        and made["station"] == ""
        and made["statusDetail"] in (None, "unreachable")
    )
    again = await client.post(
        DEV, headers=auth, json={"id": made["id"], "name": "X", "address": "virtual://x"}
    )
    assert_error(again.status, await again.json(), 409, "already exists")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"address": "virtual://x"}, "name is required"),
        ({"name": 5, "address": "virtual://x"}, "name must be a string"),
        ({"name": "", "address": "virtual://x"}, "name must be 1-64"),
        ({"name": "K"}, "address is required"),
        ({"name": "K", "address": "ftp://printer"}, "address must start with"),
        ({"name": "K", "address": "tcp://localhost:9100"}, "address refused"),
        ({"name": "K", "address": "tcp://169.254.169.254:80"}, "address refused"),
        ({"name": "K", "address": "usb:///dev/sda"}, "printer port"),
        ({"name": "K", "address": "lp:///var/lib/tablegate/tablegate.db"}, "printer port"),
        ({"name": "K", "address": "serial:///dev/ttyUSB0?baud=fast"}, "baud"),
        ({"name": "K", "address": "virtual://x", "id": "no spaces"}, "id must be 1-16"),
        ({"name": "K", "address": "virtual://x", "id": 7}, "id must be a string"),
        ({"name": "K", "address": "virtual://x", "paper": "A4"}, "paper must be 80mm or 58mm"),
        ({"name": "K", "address": "virtual://x", "station": ["a"]}, "station must be a string"),
        ({"name": "K", "address": "virtual://x", "colour": "red"}, "Unknown properties: 'colour'"),
    ],
)
async def test_add_device_validation(
    client: Client, auth: dict[str, str], body: dict[str, Any], fragment: str
) -> None:
    resp = await client.post(DEV, headers=auth, json=body)
    assert_error(resp.status, await resp.json(), 400, fragment)
    listing = await (await client.get(DEV, headers=auth)).json()
    assert listing["devices"]["total"] == 0


async def test_remove_device(client: Client, auth: dict[str, str], printer: str) -> None:
    status, _ = await submit(client, auth, printer, {"data": "x"})
    assert status == 200
    resp = await client.delete(f"{DEV}{printer}", headers=auth)
    assert (resp.status, await resp.json()) == (200, {"success": True})
    gone = await client.get(f"{DEV}{printer}", headers=auth)
    assert_error(gone.status, await gone.json(), 404, "not found")
    twice = await client.delete(f"{DEV}{printer}", headers=auth)
    assert_error(twice.status, await twice.json(), 404, "'kitchen1' not found")


async def test_paths_answer_with_and_without_the_trailing_slash(
    client: Client, auth: dict[str, str], printer: str
) -> None:
    assert (await client.get("/api/dev/devices", headers=auth)).status == 200
    assert (await client.get(f"{DEV}{printer}/", headers=auth)).status == 200
    resp = await client.post(f"{DEV}{printer}/requests", headers=auth, json={"data": "x"})
    assert resp.status == 200
    rid = (await resp.json())["request"]["id"]
    assert (await client.get(f"{DEV}{printer}/requests", headers=auth)).status == 200
    assert (await client.get(f"{DEV}{printer}/requests/{rid}/", headers=auth)).status == 200
    assert (await client.get(f"{DEV}{printer}/requests/{rid}", headers=auth)).status == 200


# -- print requests ---------------------------------------------------------------------------


async def test_submit_defaults_and_the_seed_properties(
    client: Client, auth: dict[str, str], printer: str
) -> None:
    before = int(time.time())
    status, body = await submit(client, auth, printer, {"data": "Text to print"})
    assert status == 200 and body["success"] is True and set(body) == {"success", "request"}
    r = body["request"]
    assert set(r) == REQUEST_KEYS
    assert set(r["process"]) == {"status", "statusDate"}
    assert set(r["input"]) == {"command", "data", "dateSent"}
    assert set(r["output"]) == {"data", "dateReceived"}
    assert set(r["report"]) == {"enabled", "attemps", "status", "statusDate", "error"}
    si.ImprimoRequest.model_validate(r)
    assert len(r["id"]) == 32
    assert r["input"] == {"command": "print-text", "data": "Text to print", "dateSent": None}
    assert r["reserved"] is None and r["error"] is None
    assert r["output"] == {"data": None, "dateReceived": None}
    assert r["process"]["status"] == "queueing"
    assert before - 1 <= r["dateCreated"] <= time.time() + 1
    assert abs(r["deadline"] - (r["dateCreated"] + 300)) <= 1
    assert r["report"]["enabled"] is False and r["report"]["attemps"] == 0
    got = await client.get(f"{requests_url(printer)}{r['id']}", headers=auth)
    one = await got.json()
    assert got.status == 200 and one["request"]["id"] == r["id"]
    assert set(one["request"]) == REQUEST_KEYS


async def test_submit_every_command(client: Client, auth: dict[str, str], printer: str) -> None:
    deadline = time.time() + 3600.5
    cases: list[tuple[dict[str, Any], str, Any]] = [
        ({"command": "print", "data": "x"}, "print-text", "x"),
        (
            {"command": "print-text", "data": "x", "deadline": deadline, "reserved": "ref-1"},
            "print-text",
            "x",
        ),
        ({"command": "print-order", "data": "2 pizzas"}, "print-order", "2 pizzas"),
        (
            {"command": "print-order", "data": {"number": "66", "items": [{"title": "Pizza"}]}},
            "print-order",
            {
                "number": "66",
                "items": [{"title": "Pizza", "quantity": 1, "notes": "", "station": ""}],
                "needsAnswer": True,
            },
        ),
        (
            {"command": "print-receipt", "data": {"lines": [{"title": "Tea", "unitPrice": 250}]}},
            "print-receipt",
            {
                "number": "",
                "lines": [{"title": "Tea", "quantity": 1, "unitPrice": 250}],
                "totals": [],
                "currency": "EUR",
                "minorDigits": 2,
                "footer": "",
            },
        ),
        ({"command": "open-drawer"}, "open-drawer", None),
        ({"command": "open-drawer", "data": {"pin": 5}}, "open-drawer", {"pin": 5}),
    ]
    for body, command, data in cases:
        status, answer = await submit(client, auth, printer, body)
        assert status == 200, (body, answer)
        assert answer["request"]["input"]["command"] == command
        assert answer["request"]["input"]["data"] == data
    with_deadline = (await submit(client, auth, printer, cases[1][0]))[1]["request"]
    assert with_deadline["deadline"] == int(deadline) and with_deadline["reserved"] == "ref-1"
    url = f"http://127.0.0.1:{closed_port()}/hook"
    status, reported = await submit(client, auth, printer, {"data": "x", "reportUrl": url})
    assert status == 200 and reported["request"]["report"]["enabled"] is True


PAST = 1_000_000.0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"command": "fax", "data": "x"}, "Unknown command 'fax'; use one of: print-text"),
        ({"command": 5, "data": "x"}, "Unknown command"),
        ({}, "data (print-text) must be a non-empty string"),
        ({"data": 5}, "data (print-text) must be a non-empty string"),
        ({"data": ["x"]}, "data (print-text)"),
        ({"data": "x" * 32_769}, "longer than 32768"),
        ({"command": "print-receipt", "data": "x"}, "data (print-receipt) must be an object"),
        ({"command": "print-receipt", "data": {"lines": []}}, "data.lines must be a non-empty"),
        ({"command": "print-order", "data": {}}, "needs orderId or number"),
        ({"command": "print-order", "data": {"orderId": "nope"}}, "is not an active order"),
        ({"command": "print-order", "data": {"number": "1", "tip": 1}}, "unknown properties: tip"),
        ({"command": "open-drawer", "data": {"pin": 3}}, "data.pin must be 2 or 5"),
        ({"data": "x", "deadline": "1478979898"}, "deadline must be a number"),
        ({"data": "x", "deadline": True}, "deadline must be a number"),
        ({"data": "x", "deadline": [1]}, "deadline must be a number"),
        ({"data": "x", "deadline": PAST}, "deadline is in the past"),
        ({"data": "x", "deadline": 4_000_000_000}, "more than 7 days away"),
        ({"data": "x", "deadline": 1_478_979_898_000}, "milliseconds"),
        ({"data": "x", "reserved": "r" * 61}, "at most 60 ASCII"),
        ({"data": "x", "reserved": "café"}, "at most 60 ASCII"),
        ({"data": "x", "reserved": 5}, "reserved must be a string"),
        ({"data": "x", "reportUrl": 5}, "reportUrl must be an http(s) URL"),
        ({"data": "x", "reportUrl": "ftp://pos.example/"}, "reportUrl refused"),
        ({"data": "x", "reportUrl": "http://169.254.169.254/"}, "reportUrl refused"),
        ({"data": "x", "deviceId": "kitchen1"}, "Unknown properties: 'deviceId'. Allowed:"),
        (b"{", "Invalid JSON body"),
        (b"", "the body is empty"),
        (b"[1]", "expected an object"),
        (b'"x"', "expected an object"),
        (b"\xff\xfe", "Invalid JSON body"),
    ],
)
async def test_bad_submissions_are_400_and_change_nothing(
    client: Client, auth: dict[str, str], printer: str, body: Any, fragment: str
) -> None:
    status, answer = await submit(client, auth, printer, body)
    assert_error(status, answer, 400, fragment)
    assert await request_total(client, auth, printer) == 0


async def test_requests_are_paged_newest_first(
    client: Client, auth: dict[str, str], printer: str
) -> None:
    ids = []
    for n in range(5):
        ids.append((await submit(client, auth, printer, {"data": f"t{n}"}))[1]["request"]["id"])
        await asyncio.sleep(0.01)
    first = (await (await client.get(f"{requests_url(printer)}?limit=3", headers=auth)).json())[
        "requests"
    ]
    assert first["count"] == 3 and first["total"] == 5
    assert [r["id"] for r in first["items"]] == ids[::-1][:3]
    assert first["next"] == f"{requests_url(printer)}?limit=3&offset=3"
    second = (await (await client.get(first["next"], headers=auth)).json())["requests"]
    assert [r["id"] for r in second["items"]] == ids[::-1][3:]
    assert second["next"] is None and second["count"] == 2


async def test_request_list_limit_is_capped(
    client: Client, auth: dict[str, str], gateway: Gateway, printer: str
) -> None:
    from gateway.core.printing import Command

    for n in range(101):
        await gateway.printing.submit(printer, Command.PRINT_TEXT, f"t{n}")
    page = (await (await client.get(f"{requests_url(printer)}?limit=1000", headers=auth)).json())[
        "requests"
    ]
    assert (page["count"], page["total"]) == (100, 101)
    assert page["next"] == f"{requests_url(printer)}?limit=100&offset=100"


async def test_not_found(client: Client, auth: dict[str, str], printer: str) -> None:
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"{DEV}nope", {}),
        ("DELETE", f"{DEV}nope", {}),
        ("GET", requests_url("nope"), {}),
        ("POST", requests_url("nope"), {"json": {"data": "x"}}),
        ("POST", requests_url("nope"), {"data": b"not json"}),  # the device is judged first
        ("GET", f"{requests_url('nope')}{'0' * 32}", {}),
        ("POST", f"{requests_url('nope')}{'0' * 32}/response", {"json": {"accepted": False}}),
        ("GET", f"{DEV}nope/preview", {}),
    ]
    for method, path, kwargs in cases:
        resp = await client.request(method, path, headers=auth, **kwargs)
        assert_error(resp.status, await resp.json(), 404, "Device 'nope' not found.")
    resp = await client.get(f"{requests_url(printer)}{'0' * 32}", headers=auth)
    assert_error(resp.status, await resp.json(), 404, "not found on device 'kitchen1'")
    for path in (
        "/api/dev",
        "/api/dev/",
        "/api/dev/printers",
        f"{DEV}{printer}/nothing",
        f"{requests_url(printer)}x/y/z",
    ):
        resp = await client.get(path, headers=auth)
        assert resp.content_type == "application/json"
        assert_error(resp.status, await resp.json(), 404, "Unknown path.")


async def test_method_not_allowed(client: Client, auth: dict[str, str], printer: str) -> None:
    resp = await client.put(DEV, headers=auth, json={})
    assert_error(resp.status, await resp.json(), 405, "Method not allowed")
    assert set(resp.headers["Allow"].split(",")) == {"GET", "POST"}
    resp = await client.delete(requests_url(printer), headers=auth)
    assert_error(resp.status, await resp.json(), 405)


async def test_body_too_large(client: Client, auth: dict[str, str], printer: str) -> None:
    big = json.dumps({"data": "x" * 70_000}).encode()
    status, body = await submit(client, auth, printer, big)
    assert_error(status, body, 413, "too large")
    assert await request_total(client, auth, printer) == 0


# -- the worker's answer (extension) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 400, "accepted must be true or false"),
        ({"accepted": "yes", "time": 5}, 400, "accepted must be true or false"),
        ({"accepted": True}, 400, "time (minutes) is required when accepting"),
        ({"accepted": True, "time": -1}, 400, "from 0 to 1440"),
        ({"accepted": True, "time": 1441}, 400, "from 0 to 1440"),
        ({"accepted": True, "time": 5.5}, 400, "integer number of minutes"),
        ({"accepted": True, "time": True}, 400, "integer number of minutes"),
        ({"accepted": True, "time": 5, "why": "x"}, 400, "Unknown properties: 'why'"),
        ({"accepted": True, "time": 5}, 409, ", not waiting for an answer."),
        ({"accepted": False}, 409, "not waiting for an answer"),
    ],
)
async def test_answer_validation_and_conflict(
    client: Client,
    auth: dict[str, str],
    printer: str,
    body: dict[str, Any],
    status: int,
    fragment: str,
) -> None:
    _, made = await submit(client, auth, printer, {"command": "print-order", "data": "2 pizzas"})
    rid = made["request"]["id"]
    resp = await client.post(f"{requests_url(printer)}{rid}/response", headers=auth, json=body)
    assert_error(resp.status, await resp.json(), status, fragment)
    after = await (await client.get(f"{requests_url(printer)}{rid}", headers=auth)).json()
    assert after["request"]["output"] == {"data": None, "dateReceived": None}
    unknown = await client.post(
        f"{requests_url(printer)}{'0' * 32}/response", headers=auth, json={"accepted": False}
    )
    assert_error(unknown.status, await unknown.json(), 404, "Request '000")


async def test_answer_an_order_waiting_for_it(
    client: Client, auth: dict[str, str], gateway: Gateway
) -> None:
    """The API side of accept/refuse. The request is put into waiting-output by hand (the
    device's worker stopped first): printing it for real is the worker tests' business."""
    svc = gateway.printing
    did = (await add_printer(client, auth, address="virtual://none"))["id"]
    await svc._workers.pop(did).stop()
    rids = []
    for _ in range(2):
        _, made = await submit(client, auth, did, {"command": "print-order", "data": "x"})
        r = svc.open[made["request"]["id"]]
        await svc.queue.commit(
            [r.evolve(process_status=ProcessStatus.WAITING_OUTPUT, date_sent=time.time())],
            [],
            report=False,
        )
        rids.append(r.id)
    resp = await client.post(
        f"{requests_url(did)}{rids[0]}/response/", headers=auth, json={"accepted": True, "time": 15}
    )
    body = await resp.json()
    assert resp.status == 200, body
    si.RequestResponse.model_validate(body)
    done = body["request"]
    assert done["process"]["status"] == "archived"
    assert done["output"]["data"] == {"accepted": True, "time": 15}
    assert abs(done["output"]["dateReceived"] - time.time()) < 5
    assert isinstance(done["input"]["dateSent"], int)
    refused = await client.post(
        f"{requests_url(did)}{rids[1]}/response",
        headers=auth,
        json={"accepted": False, "time": None},
    )
    assert (await refused.json())["request"]["output"]["data"] == {"accepted": False, "time": None}
    again = await client.post(
        f"{requests_url(did)}{rids[0]}/response", headers=auth, json={"accepted": False}
    )
    assert_error(again.status, await again.json(), 409, "Request is archived")


async def test_a_missed_deadline_shows_the_error_object(
    client: Client, auth: dict[str, str], printer: str
) -> None:
    _, made = await submit(client, auth, printer, {"data": "x", "deadline": time.time() + 1.2})
    url = f"{requests_url(printer)}{made['request']['id']}"
    for _ in range(100):
        r = (await (await client.get(url, headers=auth)).json())["request"]
        if r["process"]["status"] == "archived":
            break
        await asyncio.sleep(0.1)
    assert r["process"]["status"] == "archived", r
    assert set(r["error"]) == {"processStatus", "code", "message", "dateCreated"}
    assert r["error"]["code"] in {
        "network-timeout",
        "deadline",
        "incompatible-device-state",
        "max-retries",
    }
    si.ImprimoRequest.model_validate(r)


# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "Missing Authorization header."),
        ({"Authorization": "Basic dXNlcjo="}, "Bearer"),
        ({"Authorization": "Bearer"}, "Bearer"),
        ({"Authorization": "Bearer 0123"}, "Invalid API key."),
    ],
)
async def test_auth_failures_are_401_in_the_envelope(
    client: Client, headers: dict[str, str], fragment: str
) -> None:
    for method, path in [
        ("GET", DEV),
        ("POST", DEV),
        ("GET", f"{DEV}x/requests/"),
        ("POST", f"{DEV}x/requests/"),
    ]:
        resp = await client.request(method, path, headers=headers, json={"data": "x"})
        assert_error(resp.status, await resp.json(), 401, fragment)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_auth_throttle_is_429_in_the_envelope(client: Client, auth: dict[str, str]) -> None:
    statuses = []
    for _ in range(22):
        resp = await client.get(DEV, headers={"Authorization": "Bearer wrong"})
        statuses.append(resp.status)
    assert statuses[:19] == [401] * 19 and statuses[-1] == 429
    resp = await client.get(DEV, headers={"Authorization": "Bearer wrong"})
    assert_error(resp.status, await resp.json(), 429, "Too many failed authentications")
    assert int(resp.headers["Retry-After"]) > 0
    # A good token from that address is still served (issue 9, item 7).
    assert (await client.get(DEV, headers=auth)).status == 200


# -- unavailable ------------------------------------------------------------------------------


async def test_printing_not_running_is_503(
    client: Client, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Services has no Optional printing any more (issue 10): the refusal a printing service
    # that cannot serve raises is what the dialect must still answer 503 with Retry-After.
    def refused(request: web.Request) -> Any:
        raise Unavailable(Code.API_UNAVAILABLE, "Printing is not running on this gateway.")

    monkeypatch.setattr(imprimo_handlers, "_service", refused)
    for path in (DEV, f"{DEV}x", requests_url("x")):
        resp = await client.get(path, headers=auth)
        assert_error(resp.status, await resp.json(), 503, "Printing is not running")
        assert resp.headers["Retry-After"] == "2"


@pytest.mark.allow_logged_errors  # the printer's worker cannot write either, and says so
async def test_storage_failure_is_503_and_writes_nothing(
    client: Client,
    auth: dict[str, str],
    gateway: Gateway,
    printer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def failing(*_: Any, **__: Any) -> Any:
        raise Unavailable(Code.STORAGE_FAILED, "Storage failed; nothing was written.")

    with monkeypatch.context() as m:
        m.setattr(gateway.writer, "run", failing)
        status, body = await submit(client, auth, printer, {"data": "x"})
        assert_error(status, body, 503, "Storage failed")
    assert await request_total(client, auth, printer) == 0


@pytest.mark.allow_logged_errors
async def test_a_raw_sqlite_error_is_503(
    client: Client, auth: dict[str, str], printer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.store import printing as repo

    def full(*_: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as m:
        m.setattr(repo, "save_request", full)
        status, body = await submit(client, auth, printer, {"data": "x"})
    assert_error(status, body, 503, "Storage failed")
    assert await request_total(client, auth, printer) == 0


# -- preview of a demo virtual printer -------------------------------------------------------


async def test_preview(
    client: Client, auth: dict[str, str], gateway: Gateway, printer: str
) -> None:
    resp = await client.get(f"{DEV}{printer}/preview", headers=auth)
    assert_error(resp.status, await resp.json(), 404, "not a virtual printer")
    resp = await client.get(f"{DEV}{printer}/preview.png", headers=auth)
    assert_error(resp.status, await resp.json(), 404, "not a virtual printer")
    tickets: list[tuple[float, str, Any]] = []
    gateway.ctx.previews[printer] = lambda: list(tickets)
    empty = await client.get(f"{DEV}{printer}/preview", headers=auth)
    assert (empty.status, await empty.json()) == (200, {"success": True, "tickets": []})
    resp = await client.get(f"{DEV}{printer}/preview.png", headers=auth)
    assert_error(resp.status, await resp.json(), 404, "Nothing printed")
    png = b"\x89PNG\r\n\x1a\nlatest"
    tickets += [
        (1_700_000_000.7, "first", lambda: b"old"),
        (1_700_000_005.0, "second", lambda: png),
    ]
    listed = await client.get(f"{DEV}{printer}/preview/", headers=auth)
    body = await listed.json()
    si.Preview.model_validate(body)
    assert body["tickets"] == [
        {"receivedAt": 1_700_000_000, "text": "first"},
        {"receivedAt": 1_700_000_005, "text": "second"},
    ]
    image = await client.get(f"{DEV}{printer}/preview.png", headers=auth)
    assert image.status == 200 and image.content_type == "image/png"
    assert await image.read() == png
    assert image.headers["Cache-Control"] == "no-store"


# -- the error table --------------------------------------------------------------------------


@pytest.mark.parametrize("code", list(IMPRIMO_ERRORS), ids=lambda c: c.value)
async def test_every_code_in_the_table_answers_its_status(aiohttp_client: Any, code: Code) -> None:
    """Each code through the real middleware (the routes above reach most of them; this
    covers every one, PRINT_NO_STATION included, which no /api/dev/ route raises today)."""

    async def boom(_: web.Request) -> web.Response:
        raise GatewayError(code)

    app = web.Application(middlewares=[envelope_middleware])
    app[DIALECTS_KEY] = Dialects(DIALECTS)
    app.router.add_get("/api/dev/boom", boom)
    app.router.add_get("/api/v2/boom", boom)
    client = await aiohttp_client(app)
    status, message = IMPRIMO_ERRORS[code]
    resp = await client.get("/api/dev/boom")
    assert resp.status == status >= 400
    assert await resp.json() == {"success": False, "error": message}
    if status == 401:
        assert "WWW-Authenticate" in resp.headers
    if status in (429, 503):
        assert "Retry-After" in resp.headers
    if code in ERRORS:  # the other dialect keeps its own envelope for the same code
        other = await client.get("/api/v2/boom")
        assert (await other.json())["returnCode"] == ERRORS[code][1]


def test_every_printing_code_has_an_imprimo_status() -> None:
    printing = {c for c in Code if c.name.startswith("PRINT_")}
    assert printing <= set(IMPRIMO_ERRORS)
    assert all(400 <= status < 600 for status, _ in IMPRIMO_ERRORS.values())


# -- fuzz ---------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
submit_bodies = st.dictionaries(
    st.sampled_from(["command", "data", "deadline", "reserved", "reportUrl"]) | st.text(max_size=8),
    json_values
    | st.sampled_from(
        ["print-text", "print-order", "print-receipt", "open-drawer", "print", "x", 1.7e9, 1.7e12]
    ),
    max_size=5,
)
raw_bodies = st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=submit_bodies.map(lambda v: json.dumps(v).encode()) | raw_bodies,
    target=st.sampled_from(["submit", "answer", "device"]),
)
async def test_post_bodies_never_500(
    client: Client, auth: dict[str, str], body: bytes, target: str
) -> None:
    if (await client.get(f"{DEV}fuzz", headers=auth)).status == 404:
        await add_printer(client, auth, id="fuzz", address="virtual://none")
    path = {
        "submit": requests_url("fuzz"),
        "device": DEV,
        "answer": f"{requests_url('fuzz')}{'0' * 32}/response",
    }[target]
    resp = await client.post(path, data=body, headers={**auth, "Content-Type": "application/json"})
    payload = await resp.json()
    assert resp.status in (200, 201, 400, 404, 409), payload
    if resp.status < 400:
        assert payload["success"] is True
    else:
        assert set(payload) == {"success", "error"} and payload["success"] is False
