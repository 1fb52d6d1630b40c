"""Issue 10: the web layer is assembled from an explicit tuple of dialects, nothing registers
itself at import, so building it again in the same process gives the same thing."""

from __future__ import annotations

from aiohttp import web

from gateway.app import Gateway
from web.dialect import DIALECTS_KEY, Dialects
from web.openapi import build_openapi
from web.server import DIALECTS, build_web_app


def _table(app: web.Application) -> list[tuple[str, str]]:
    return [(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None]


async def test_building_twice_gives_the_same_routes_and_document(gateway: Gateway) -> None:
    first = build_web_app(gateway.ctx)
    second = build_web_app(gateway.ctx)
    assert _table(first) == _table(second)
    assert _table(first) == _table(gateway.app)  # the gateway's own app is built the same way
    assert len(_table(first)) > 50
    assert build_openapi() == build_openapi()
    assert first[DIALECTS_KEY] == second[DIALECTS_KEY]


def test_the_document_walks_only_the_dialects_it_is_given() -> None:
    """No dialect reaches the document or the routes except through the tuple."""
    (trackertrack,) = (d for d in DIALECTS if d.name == "trackertrack")
    alone = build_openapi((trackertrack,))
    assert not any(
        p.startswith(("/api/dev/", "/v1/orders", "/api/orders.php")) for p in alone["paths"]
    )
    assert not any(
        n.startswith(("ImprimoError", "ImprintedError", "PrintApiError"))
        for n in alone["components"]["responses"]
    )
    full = build_openapi()
    assert {p for p in alone["paths"]} < {p for p in full["paths"]}
    assert build_openapi() == full  # building the smaller one changed nothing


def test_each_route_is_in_exactly_one_dialect() -> None:
    routes = Dialects(DIALECTS).routes()
    keys = [(r.method, p) for r in routes for p in (r.path, *r.aliases)]
    assert len(keys) == len(set(keys))
