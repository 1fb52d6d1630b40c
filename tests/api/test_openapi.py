"""The OpenAPI document: the committed copy is the generated one, it is served, it covers every
route, and real answers match the models it is generated from (`extra="forbid"` catches a key
a handler adds or renames)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import BaseModel, ValidationError

from gateway.app import Gateway
from gateway.core.models import ORDER_TYPES
from web.api.admin.schemas import TokenWindow
from web.api.imprimo import schemas as si
from web.api.trackertrack import schemas as sc
from web.dialect import Dialects
from web.envelope import ERRORS, IMPRIMO_ERRORS
from web.openapi import OPENAPI_PATH, build_openapi, render
from web.routing import Route
from web.server import DIALECTS, OPENAPI_FILE

ROUTES = Dialects(DIALECTS).routes()
REGENERATE = ".venv/bin/python -m web.openapi > web/openapi.json"
Client = TestClient[web.Request, web.Application]


# -- the document ---------------------------------------------------------------------------


def test_committed_document_is_the_generated_one() -> None:
    committed = OPENAPI_FILE.read_text()
    assert committed == render(), (
        f"web/openapi.json is stale: the routes or models changed. Regenerate it with "
        f"`{REGENERATE}` and commit the result."
    )


def test_every_route_is_documented_and_nothing_else() -> None:
    doc = build_openapi()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    table = {(r.method, r.path) for r in ROUTES}
    assert table - documented == set()
    assert documented - table == {("GET", OPENAPI_PATH)}


async def test_every_registered_route_is_documented(gateway: Gateway) -> None:
    """Catches a route added to the app beside the table (which would also skip the auth
    wrapper)."""
    doc = build_openapi()
    registered = {
        (r.method, r.resource.canonical)
        for r in gateway.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    aliases = {(r.method, a) for r in ROUTES for a in r.aliases}
    assert registered == documented | aliases
    for r in ROUTES:  # an alias is named in its operation's description
        for a in r.aliases:
            assert f"`{a}`" in doc["paths"][r.path][r.method.lower()]["description"]


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_reference_resolves() -> None:
    doc = build_openapi()
    for ref in set(_refs(doc)):
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved {ref}"
            node = node[part]


def test_operations_have_security_responses_and_unique_ids() -> None:
    doc = build_openapi()
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "security" in op, (method, path)
            assert any(s.startswith("2") or s == "101" for s in op["responses"]), (method, path)
    ws = doc["paths"]["/api/v2/websocket"]["get"]
    assert "101" in ws["responses"]
    assert {p["name"] for p in ws["parameters"]} == {"since", "accesstoken"}
    v1 = doc["paths"]["/api/v1/activeorders"]["get"]["security"]
    assert {"basicAuth": []} in v1


PYDANTIC_ONLY = {"ge", "gt", "le", "lt", "min_length", "max_length", "multiple_of"}


def _schema_keys(node: Any, under_properties: bool = False) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if not under_properties:
                yield key
            yield from _schema_keys(value, key == "properties" and not under_properties)
    elif isinstance(node, list):
        for item in node:
            yield from _schema_keys(item)


def test_constraints_are_json_schema_keywords() -> None:
    """A constraint pydantic cannot place (e.g. `Field(ge=1)` on `int | SkipJsonSchema[None]`)
    leaks as a raw keyword that neither validators nor generators understand."""
    leaked = PYDANTIC_ONLY & set(_schema_keys(build_openapi()))
    assert not leaked, f"constrain the inner type (Annotated[int, Field(...)]): {leaked}"


def test_every_error_status_has_a_shared_response() -> None:
    responses = build_openapi()["components"]["responses"]
    for status, rc, _ in ERRORS.values():
        assert f"`{rc}`" in responses[f"Error{status}"]["description"]


def test_every_imprimo_error_status_has_a_shared_response() -> None:
    responses = build_openapi()["components"]["responses"]
    for status, message in IMPRIMO_ERRORS.values():
        assert message in responses[f"ImprimoError{status}"]["description"]


def test_imprimo_operations_use_the_imprimo_envelope() -> None:
    doc = build_openapi()
    for path, ops in doc["paths"].items():
        for op in ops.values():
            refs = [r["$ref"] for s, r in op["responses"].items() if s >= "400"]
            imprimo = path.startswith("/api/dev/")
            assert all(("/ImprimoError" in r) == imprimo for r in refs), path
            assert refs or not imprimo, path
            assert ("printing" in op["tags"]) == imprimo, path


def test_order_type_enum_is_the_gateways() -> None:
    assert {t.value for t in sc.OrderType} == ORDER_TYPES


async def test_the_document_is_served(client: Client) -> None:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == json.loads(OPENAPI_FILE.read_text())


# -- real answers against the models ---------------------------------------------------------


def _route(method: str, path: str) -> Route:
    for r in ROUTES:
        if r.method == method and r.path == path:
            return r
    raise AssertionError(f"no route {method} {path}")


async def call(
    client: Client,
    method: str,
    template: str,
    expect: int,
    *,
    path: str | None = None,
    **kwargs: Any,
) -> BaseModel:
    """Call, check the status, and validate the body against what the route table documents
    for that status (a success model, one of several, or the error `Message`)."""
    resp = await client.request(method, path or template, **kwargs)
    body = await resp.json()
    assert resp.status == expect, body
    assert body["status"] == expect
    route = _route(method, template)
    documented = route.responses.get(expect, sc.Message)
    assert documented is not None
    models = documented if isinstance(documented, tuple) else (documented,)
    matches: list[BaseModel] = []
    errors: list[str] = []
    for model in models:
        try:
            matches.append(model.model_validate(body))
        except ValidationError as exc:
            errors.append(str(exc))
    assert len(matches) == 1, f"{method} {template} {expect}: {body}\n" + "\n".join(errors)
    return matches[0]


@pytest.fixture(params=["v2", "v1"])
def base(request: pytest.FixtureRequest) -> str:
    return f"/api/{request.param}"


async def test_order_answers_match_the_models(
    client: Client, auth: dict[str, str], base: str
) -> None:
    d = sc.dialect(base)
    ao, one = f"{base}/activeorders", f"{base}/activeorders/{{ident}}"

    health = await call(client, "GET", base, 200)
    assert isinstance(health, sc.Health) and health.apiVersion == base[-2:]

    created = await call(
        client, "POST", ao, 201, headers=auth, json={"name": "66", "orderType": "ON_PREMISES"}
    )
    assert isinstance(created, d.order_response)
    assert created.model_dump()["warning"] == "Tracker not assigned with order."
    located = await call(
        client,
        "POST",
        f"{ao}",
        201,
        path=f"{ao}?dummy_tracker_address=true",
        headers=auth,
        json={"name": "67", "orderType": "TO_GO", "locationName": "4"},
    )
    assert isinstance(located, d.order_response)
    assert located.model_dump()["warning"] is None  # left out: a tracker is bound
    again = await call(
        client, "POST", ao, 200, headers=auth, json={"name": "66", "orderType": "ON_PREMISE"}
    )
    assert isinstance(again, sc.Message) and again.returnCode == 1009
    modified = await call(
        client, "POST", ao, 200, headers=auth, json={"name": "66", "orderType": "TO_GO"}
    )
    assert isinstance(modified, d.order_response)

    listing = await call(client, "GET", ao, 200, headers=auth)
    assert isinstance(listing, d.order_list) and listing.model_dump()["count"] == 2
    got = await call(client, "GET", one, 200, path=f"{ao}/67", headers=auth)
    assert isinstance(got, d.order_response)

    paged = await call(
        client,
        "POST",
        f"{one}/page",
        200,
        path=f"{ao}/67/page",
        headers=auth,
        json={"tracking": False},
    )
    assert isinstance(paged, d.order_action)
    await call(
        client, "POST", f"{one}/guest_paging", 200, path=f"{ao}/67/guest_paging", headers=auth
    )
    cancelled = await call(client, "DELETE", f"{one}/page", 200, path=f"{ao}/67/page", headers=auth)
    assert isinstance(cancelled, d.order_action)
    nothing = await call(client, "DELETE", f"{one}/page", 200, path=f"{ao}/66/page", headers=auth)
    assert isinstance(nothing, sc.Message) and nothing.returnCode == 1003
    impossible = await call(client, "POST", f"{one}/page", 409, path=f"{ao}/66/page", headers=auth)
    assert isinstance(impossible, sc.Message) and impossible.returnCode == -14
    cleared = await call(client, "DELETE", one, 200, path=f"{ao}/67", headers=auth)
    assert isinstance(cleared, d.order_action)

    history = await call(client, "GET", f"{base}/orders", 200, headers=auth)
    assert isinstance(history, d.history) and history.model_dump()["total"] == 2
    stats = await call(client, "GET", f"{base}/statistics", 200, headers=auth)
    assert isinstance(stats, d.statistics)

    all_cleared = await call(client, "DELETE", ao, 200, headers=auth)
    assert isinstance(all_cleared, sc.ClearedAll) and all_cleared.count == 1


async def test_gateway_and_token_answers_match_the_models(
    client: Client, auth: dict[str, str], gateway: Gateway, base: str
) -> None:
    settings = await call(client, "GET", f"{base}/gateway/settings", 200, headers=auth)
    assert isinstance(settings, sc.SettingsResponse)
    changed = await call(
        client,
        "POST",
        f"{base}/gateway/settings",
        200,
        headers=auth,
        json={"targetTimeDefault": 240, "timezone": "Europe/Paris"},
    )
    assert isinstance(changed, sc.SettingsChanged)

    url = "http://pos.example/hook"
    if base.endswith("v2"):
        reg = await call(
            client, "POST", "/api/v2/register", 200, headers=auth, json={"http_client": url}
        )
    else:
        reg = await call(
            client,
            "GET",
            "/api/v1/register",
            200,
            path=f"/api/v1/register?http_client={url}",
            headers=auth,
        )
    assert isinstance(reg, sc.ClientRegistered)
    clients = await call(client, "GET", f"{base}/register/clients", 200, headers=auth)
    assert isinstance(clients, sc.ClientList) and clients.count == 1
    await call(client, "DELETE", f"{base}/register", 200, headers=auth, json={"http_client": url})

    at = f"{base}/accesstoken"
    minted = await call(
        client, "POST", f"{at}/generate", 201, path=f"{at}/generate?name=pos-2", headers=auth
    )
    assert isinstance(minted, sc.TokenCreated)
    tokens = await call(client, "GET", at, 200, headers=auth)
    assert isinstance(tokens, sc.TokenList) and tokens.count == 2
    await call(
        client, "DELETE", f"{at}/{{token_id}}", 200, path=f"{at}/{minted.token.id}", headers=auth
    )

    closed = await call(client, "GET", f"{at}/generate", 403, path=f"{at}/generate?name=x")
    assert isinstance(closed, sc.Message) and closed.returnCode == -3
    admin = {"Authorization": f"Bearer {gateway.ctx.admin_cookie}"}
    window = await call(client, "POST", "/api/admin/token-window", 200, headers=admin)
    assert isinstance(window, TokenWindow)
    in_window = await call(client, "GET", f"{at}/generate", 201, path=f"{at}/generate?name=x")
    assert isinstance(in_window, sc.TokenCreated)


@pytest.mark.parametrize(
    ("method", "template", "path", "status", "rc", "kwargs"),
    [
        ("GET", "/api/v2/activeorders/{ident}", "/api/v2/activeorders/9", 404, -6, {}),
        ("GET", "/api/v2/activeorders/{ident}", "/api/v2/activeorders/x!", 400, -7, {}),
        (
            "POST",
            "/api/v2/activeorders",
            None,
            400,
            -9,
            {"json": {"name": "abc", "orderType": "TO_GO"}},
        ),
        ("POST", "/api/v2/activeorders", None, 400, -31, {"data": b"[1]"}),
        ("POST", "/api/v2/activeorders", None, 413, -42, {"data": b" " * 70_000}),
        ("GET", "/api/v2/orders", "/api/v2/orders?limit=0", 400, -23, {}),
        ("GET", "/api/v2/statistics", "/api/v2/statistics?target_time=0", 400, -22, {}),
        ("POST", "/api/v2/gateway/settings", None, 400, -20, {"json": {"colour": 1}}),
        (
            "DELETE",
            "/api/v2/register",
            None,
            404,
            -30,
            {"json": {"http_client": "http://pos.example/none"}},
        ),
        ("DELETE", "/api/v2/accesstoken/{token_id}", "/api/v2/accesstoken/99", 404, -35, {}),
    ],
)
async def test_error_answers_match_the_message_model(
    client: Client,
    auth: dict[str, str],
    method: str,
    template: str,
    path: str | None,
    status: int,
    rc: int,
    kwargs: dict[str, Any],
) -> None:
    route = _route(method, template)
    doc = build_openapi()["paths"][template][method.lower()]
    assert str(status) in doc["responses"], f"{method} {template} does not document {status}"
    assert route.responses.get(status) is None
    err = await call(client, method, template, status, path=path, headers=auth, **kwargs)
    assert isinstance(err, sc.Message) and err.returnCode == rc


async def test_auth_errors_match_the_message_model(client: Client) -> None:
    for headers, status, rc in (({}, 400, -1), ({"Authorization": "Bearer nope"}, 401, -2)):
        err = await call(client, "GET", "/api/v2/activeorders", status, headers=headers)
        assert isinstance(err, sc.Message) and err.returnCode == rc


def test_models_forbid_unknown_keys() -> None:
    body = {"status": 200, "returnCode": 1009, "message": "Order already started.", "x": 1}
    with pytest.raises(ValidationError):
        sc.Message.model_validate(body)


# -- the Imprimo dialect (seed 000) ----------------------------------------------------------


async def call_imprimo(
    client: Client,
    method: str,
    template: str,
    expect: int,
    *,
    path: str | None = None,
    **kwargs: Any,
) -> BaseModel:
    """Like `call`, for /api/dev/: the success model of the route, or `ImprimoError`."""
    resp = await client.request(method, path or template, **kwargs)
    body = await resp.json()
    assert resp.status == expect, body
    doc = build_openapi()["paths"][template][method.lower()]
    assert str(expect) in doc["responses"], f"{method} {template} does not document {expect}"
    model = _route(method, template).responses.get(expect, si.ImprimoError)
    assert isinstance(model, type)
    return model.model_validate(body)


async def test_imprimo_answers_match_the_models(client: Client, auth: dict[str, str]) -> None:
    dv = "/api/dev/devices/"
    one = f"{dv}{{device_id}}"
    rq, req = f"{one}/requests/", f"{one}/requests/{{request_id}}"
    created = await call_imprimo(
        client,
        "POST",
        dv,
        201,
        headers=auth,
        json={"id": "oa1", "name": "Bar", "address": "virtual://none", "station": "bar"},
    )
    assert isinstance(created, si.DeviceResponse) and created.device.id == "oa1"
    listing = await call_imprimo(client, "GET", dv, 200, path=f"{dv}?limit=1", headers=auth)
    assert isinstance(listing, si.DeviceList) and listing.devices.total == 1
    got = await call_imprimo(client, "GET", one, 200, path=f"{dv}oa1", headers=auth)
    assert isinstance(got, si.DeviceResponse)
    sent = await call_imprimo(
        client,
        "POST",
        rq,
        200,
        path=f"{dv}oa1/requests/",
        headers=auth,
        json={"command": "print-order", "data": {"number": "7"}, "reserved": "x"},
    )
    assert isinstance(sent, si.RequestResponse)
    rid = sent.request.id
    requests = await call_imprimo(client, "GET", rq, 200, path=f"{dv}oa1/requests/", headers=auth)
    assert isinstance(requests, si.RequestList) and requests.requests.count == 1
    await call_imprimo(client, "GET", req, 200, path=f"{dv}oa1/requests/{rid}", headers=auth)
    conflict = await call_imprimo(
        client,
        "POST",
        f"{req}/response",
        409,
        path=f"{dv}oa1/requests/{rid}/response",
        headers=auth,
        json={"accepted": False},
    )
    assert isinstance(conflict, si.ImprimoError)
    await call_imprimo(client, "GET", f"{one}/preview", 404, path=f"{dv}oa1/preview", headers=auth)
    await call_imprimo(
        client, "POST", rq, 400, path=f"{dv}oa1/requests/", headers=auth, json={"data": 1}
    )
    await call_imprimo(client, "GET", dv, 401, headers={"Authorization": "Bearer x"})
    deleted = await call_imprimo(client, "DELETE", one, 200, path=f"{dv}oa1", headers=auth)
    assert isinstance(deleted, si.Deleted)
    await call_imprimo(client, "GET", one, 404, path=f"{dv}oa1", headers=auth)
