"""The gateway's own admin API: the box-local token window, and the outbox's deliveries."""

from __future__ import annotations

from web import wire as sc
from web.api.admin import deliveries as da
from web.api.admin import token_window
from web.api.admin.schemas import DeadList, DeadQuery, Overview, TokenWindow
from web.routing import Auth, Route

TAG = "deliveries"
DELIVERIES = "/api/admin/deliveries"


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/api/admin/token-window",
        token_window.open_window,
        Auth.ADMIN,
        "Open the token window (box-local admin cookie)",
        "tokens",
        responses={200: TokenWindow},
    ),
    Route(
        "GET",
        DELIVERIES,
        da.overview,
        Auth.TOKEN,
        "The outbox: pending, dead, uplink",
        TAG,
        responses={200: Overview},
    ),
    Route(
        "GET",
        f"{DELIVERIES}/dead",
        da.dead_letters,
        Auth.TOKEN,
        "Dead deliveries (the dead-letter list)",
        TAG,
        query=DeadQuery,
        responses={200: DeadList},
    ),
    Route(
        "POST",
        f"{DELIVERIES}/{{delivery_id}}/replay",
        da.replay,
        Auth.TOKEN,
        "Send a dead delivery again",
        TAG,
        responses={200: sc.Message},
        errors=(404, 503),
    ),
)
