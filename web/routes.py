"""Every HTTP route in one table: method, path, handler and who may call it.

The table drives registration, the authorization wrapper and the OpenAPI document alike, so a
new route cannot skip authentication or the spec by accident.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum

from aiohttp import web
from pydantic import BaseModel

from web import schemas as sc
from web.api.common import authenticate
from web.api.imprimo import handlers as imprimo
from web.api.imprimo import schemas as si
from web.api.trackertrack import orders as tt
from web.api.trackertrack import radio, tokens
from web.api.trackertrack import radio_schemas as sr
from web.ws import compat, native

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Auth(Enum):
    NONE = "none"  # liveness, the button window
    TOKEN = "token"  # Authorization: Bearer <token> (v1 also Basic with token as username)
    ADMIN = "admin"  # the box-local admin cookie (checked by the handler)
    SOCKET = "socket"  # WebSocket: header, ?accesstoken= or first frame (checked by the handler)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    auth: Auth
    summary: str
    tag: str = "orders"
    # Documentation only (web.openapi); the handlers do not read these.
    body: type[BaseModel] | None = None  # the JSON request body
    body_required: bool = True
    query: type[BaseModel] | None = None  # one field per query parameter
    responses: sc.Responses = field(default_factory=dict)  # status -> model(s) of the body
    # Error statuses (the dialect's error envelope) besides those the auth and body imply.
    errors: tuple[int, ...] = ()
    # Other spellings of the path served by the same handler (e.g. with a trailing slash);
    # registered and authorized like the path, documented as a note on its operation.
    aliases: tuple[str, ...] = ()
    # The media type of a 2xx body that is not JSON (documented with no schema).
    produces: str | None = None


def _orders(base: str) -> list[Route]:
    ao = f"{base}/activeorders"
    one = f"{ao}/{{ident}}"
    d = sc.dialect(base)  # v1 and v2 differ in the order object and the statistics envelope
    return [
        Route("GET", base, tt.health, Auth.NONE, "Liveness and gateway facts", "gateway",
              responses={200: sc.Health}, errors=(503,)),
        Route("GET", ao, tt.list_active, Auth.TOKEN, "All active orders",
              responses={200: d.order_list}),
        Route("POST", ao, tt.start_or_locate, Auth.TOKEN, "Start or locate an order",
              body=sc.StartOrderRequest, query=sc.StartOrderQuery,
              responses={201: d.order_response, 200: (d.order_response, sc.Message)},
              errors=(503,)),
        Route("DELETE", ao, tt.clear_all, Auth.TOKEN, "Clear every active order",
              responses={200: sc.ClearedAll}, errors=(503,)),
        Route("GET", one, tt.get_one, Auth.TOKEN, "One active order by number or uuid",
              responses={200: d.order_response}, errors=(404,)),
        Route("DELETE", one, tt.clear_one, Auth.TOKEN, "Clear one order (manual override)",
              responses={200: d.order_action}, errors=(404, 503)),
        Route("POST", f"{one}/page", tt.page, Auth.TOKEN, "Page the order's tracker",
              body=sc.PageRequest, body_required=False, query=sc.PageQuery,
              responses={200: d.order_action}, errors=(404, 409, 503)),
        Route("DELETE", f"{one}/page", tt.cancel_paging, Auth.TOKEN, "Cancel paging",
              responses={200: (d.order_action, sc.Message)}, errors=(404, 503)),
        Route("POST", f"{one}/guest_paging", tt.guest_paging, Auth.TOKEN, "Page (no body)",
              responses={200: d.order_action}, errors=(404, 409, 503)),
        Route("GET", f"{base}/orders", tt.history, Auth.TOKEN, "Order history", "history",
              query=sc.HistoryQuery, responses={200: d.history}),
        Route("GET", f"{base}/statistics", tt.statistics, Auth.TOKEN, "Today's statistics",
              "history", query=sc.StatisticsQuery, responses={200: d.statistics}),
        Route("GET", f"{base}/gateway/settings", tt.get_settings, Auth.TOKEN, "Gateway settings",
              "gateway", responses={200: sc.SettingsResponse}),
        Route("POST", f"{base}/gateway/settings", tt.post_settings, Auth.TOKEN,
              "Change gateway settings", "gateway", body=sc.SettingsUpdate,
              responses={200: sc.SettingsChanged}, errors=(503,)),
        Route("GET", f"{base}/register/clients", tt.list_clients, Auth.TOKEN,
              "Registered webhook clients", "webhooks", responses={200: sc.ClientList}),
        Route("DELETE", f"{base}/register", tt.unregister, Auth.TOKEN,
              "Unregister a webhook client", "webhooks", body=sc.Register,
              responses={200: sc.Message}, errors=(404, 503)),
    ]


def _tokens(base: str) -> list[Route]:
    at = f"{base}/accesstoken"
    return [
        Route("GET", f"{at}/generate", tokens.generate_in_window, Auth.NONE,
              "Get a token while the button window is open", "tokens",
              query=sc.GenerateQuery, responses={201: sc.TokenCreated},
              errors=(400, 403, 408, 503)),
        Route("POST", f"{at}/generate", tokens.generate_with_token, Auth.TOKEN,
              "Mint a further token", "tokens", body=sc.TokenName, body_required=False,
              query=sc.MintQuery, responses={201: sc.TokenCreated}, errors=(503,)),
        Route("GET", at, tokens.list_tokens, Auth.TOKEN, "List tokens (no secrets)", "tokens",
              responses={200: sc.TokenList}),
        Route("DELETE", f"{at}/{{token_id}}", tokens.revoke_token, Auth.TOKEN, "Revoke a token",
              "tokens", responses={200: sc.Message}, errors=(404, 503)),
    ]


def _radio(base: str) -> list[Route]:
    tr, rp = f"{base}/trackers", f"{base}/repeaters"
    one = f"{tr}/{{number}}"
    return [
        Route("GET", tr, radio.list_trackers, Auth.TOKEN, "The tracker inventory", "radio",
              responses={200: sr.TrackerList}, errors=(503,)),
        Route("POST", tr, radio.pair_tracker, Auth.TOKEN, "Pair a tracker by hand", "radio",
              body=sr.PairRequest, responses={200: sr.TrackerChanged}, errors=(503,)),
        Route("DELETE", tr, radio.clear_inventory, Auth.TOKEN, "Clear the tracker inventory",
              "radio", responses={200: sr.InventoryCleared}, errors=(503,)),
        Route("GET", one, radio.get_tracker, Auth.TOKEN, "One tracker", "radio",
              responses={200: sr.TrackerDetail}, errors=(404, 503)),
        Route("POST", f"{one}/rename", radio.rename_tracker, Auth.TOKEN,
              "Give a tracker a new number", "radio", body=sr.RenameRequest,
              responses={200: sr.TrackerChanged}, errors=(404, 503)),
        Route("DELETE", one, radio.forget_tracker, Auth.TOKEN, "Forget a tracker", "radio",
              responses={200: sc.Message}, errors=(404, 503)),
        Route("GET", rp, radio.list_repeaters, Auth.TOKEN, "Radio receivers", "radio",
              responses={200: sr.RepeaterList}, errors=(503,)),
        Route("DELETE", rp, radio.clear_repeaters, Auth.TOKEN, "Forget remote repeaters",
              "radio", responses={200: sc.Message}, errors=(503,)),
        Route("POST", f"{rp}/beginPairing", radio.begin_pairing, Auth.TOKEN,
              "Open the pairing window", "radio", body=sr.PairingRequest, body_required=False,
              responses={200: sr.PairingStarted}, errors=(503,)),
        Route("POST", f"{rp}/endPairing", radio.end_pairing, Auth.TOKEN,
              "Close the pairing window", "radio", responses={200: sc.Message}, errors=(503,)),
    ]


def _slash(path: str) -> tuple[str, ...]:
    """The other spelling: seed 000 writes `devices/` and `devices/{id}`; clients vary."""
    return (path[:-1],) if path.endswith("/") else (path + "/",)


def _imprimo(base: str) -> list[Route]:
    dv = f"{base}/devices/"
    one = f"{base}/devices/{{device_id}}"
    rq = f"{one}/requests/"
    req = f"{one}/requests/{{request_id}}"
    tag = "printing"
    return [
        Route("GET", dv, imprimo.list_devices, Auth.TOKEN, "The printers (devices), paged", tag,
              query=si.PageQuery, responses={200: si.DeviceList}, aliases=_slash(dv)),
        Route("POST", dv, imprimo.add_device, Auth.TOKEN, "Register a printer (extension)",
              tag, body=si.NewDevice, responses={201: si.DeviceResponse}, errors=(409,),
              aliases=_slash(dv)),
        Route("GET", one, imprimo.get_device, Auth.TOKEN, "One printer", tag,
              responses={200: si.DeviceResponse}, errors=(404,), aliases=_slash(one)),
        Route("DELETE", one, imprimo.remove_device, Auth.TOKEN,
              "Remove a printer (extension); its open requests are archived with an error",
              tag, responses={200: si.Deleted}, errors=(404, 409), aliases=_slash(one)),
        Route("POST", f"{one}/address", imprimo.move_device, Auth.TOKEN,
              "Move a printer to a new address (extension; confirms a held mDNS move)", tag,
              body=si.DeviceAddress, responses={200: si.DeviceResponse}, errors=(404, 409)),
        Route("POST", rq, imprimo.submit, Auth.TOKEN, "Submit a print request", tag,
              body=si.SubmitRequest, responses={200: si.RequestResponse}, errors=(404,),
              aliases=_slash(rq)),
        Route("GET", rq, imprimo.list_requests, Auth.TOKEN,
              "The printer's requests, newest first", tag, query=si.PageQuery,
              responses={200: si.RequestList}, errors=(404,), aliases=_slash(rq)),
        Route("GET", req, imprimo.get_request, Auth.TOKEN, "One print request", tag,
              responses={200: si.RequestResponse}, errors=(404,), aliases=_slash(req)),
        Route("POST", f"{req}/response", imprimo.respond, Auth.TOKEN,
              "Accept or refuse an order ticket (extension)", tag, body=si.OrderAnswer,
              responses={200: si.RequestResponse}, errors=(404, 409),
              aliases=_slash(f"{req}/response")),
        Route("GET", f"{one}/preview", imprimo.preview, Auth.TOKEN,
              "What a demo virtual printer printed (extension)", tag,
              responses={200: si.Preview}, errors=(404,), aliases=_slash(f"{one}/preview")),
        Route("GET", f"{one}/preview.png", imprimo.preview_png, Auth.TOKEN,
              "The latest ticket of a demo virtual printer as PNG (extension)", tag,
              responses={200: None}, errors=(404,), produces="image/png"),
    ]


ROUTES: list[Route] = [
    *_orders("/api/v2"),
    *_tokens("/api/v2"),
    *_radio("/api/v2"),
    Route("POST", "/api/v2/register", tt.register, Auth.TOKEN, "Register a webhook client",
          "webhooks", body=sc.Register, responses={200: sc.ClientRegistered}, errors=(503,)),
    Route("GET", "/api/v2/websocket", compat.websocket, Auth.SOCKET, "Order feed (WebSocket)",
          "feed", query=sc.FeedQuery, responses={101: None}, errors=(400, 403)),
    Route("GET", "/api/ws", native.websocket, Auth.SOCKET,
          "Native feed: canonical orders and TRACKER_* events (WebSocket)", "feed",
          query=sc.FeedQuery, responses={101: None}, errors=(400, 403)),
    *_orders("/api/v1"),
    *_tokens("/api/v1"),
    Route("GET", "/api/v1/register", tt.register, Auth.TOKEN, "Register a webhook client (v1)",
          "webhooks", query=sc.RegisterQuery, responses={200: sc.ClientRegistered},
          errors=(503,)),
    Route("POST", "/api/admin/token-window", tokens.open_window, Auth.ADMIN,
          "Open the token window (box-local admin cookie)", "tokens",
          responses={200: sc.TokenWindow}),
    *_imprimo("/api/dev"),
]


# The integration dialects keep their routes in their own modules (imported here, at the end of
# the table, because they build `Route`s).
from web.api.cloudsignal import routes as routes_cloudsignal  # noqa: E402
from web.api.imprinted import routes as routes_imprinted  # noqa: E402
from web.api.order_status import routes as routes_printapi  # noqa: E402

ROUTES += [*routes_imprinted.routes(), *routes_cloudsignal.routes(), *routes_printapi.routes()]


def protect(handler: Handler, *, allow_basic: bool) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        authenticate(request, allow_basic=allow_basic)
        return await handler(request)

    guarded.__name__ = getattr(handler, "__name__", "guarded")
    return guarded


def add_routes(app: web.Application) -> None:
    for r in ROUTES:
        handler = r.handler
        if r.auth is Auth.TOKEN:
            handler = protect(handler, allow_basic=r.path.startswith("/api/v1"))
        for path in (r.path, *r.aliases):
            app.router.add_route(r.method, path, handler)
