"""The Imprinted dialect's routes (seed 001): the signed order API and the apps' management.

The order routes are `Auth.NONE` in the table because the caller is not a Bearer-token holder:
each handler verifies the seed's signature itself (AppId + Signature, or the HMAC-SHA256
headers) before it reads or writes anything; see docs/api/imprinted.md.
"""

from __future__ import annotations

from web import wire as sc
from web.api.imprinted import handlers as im
from web.api.imprinted import schemas as isc
from web.routing import Auth, Route

TAG = "imprinted"
# The JSON answers are the documented models; the same fields also come as XML (format=xml, or
# an XML body). web.openapi documents `produces` only for answers without a model so far.
XML = "application/xml"
SIGNED = " (signed: AppId + Signature, or X-Imprinted-Timestamp/-Signature)"


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        im.ORDERS,
        im.list_orders,
        Auth.NONE,
        "List the app's orders" + SIGNED,
        TAG,
        query=isc.ImprintedListQuery,
        responses={200: isc.ImprintedOrderList},
        errors=(401, 403, 429),
        produces=XML,
    ),
    Route(
        "POST",
        im.ORDERS,
        im.create_order,
        Auth.NONE,
        "Create an order, JSON or XML by Content-Type; a retry with the same "
        "external_id returns the same order (200)" + SIGNED,
        TAG,
        body=isc.ImprintedNewOrder,
        query=isc.ImprintedPostQuery,
        responses={201: isc.ImprintedOrderResponse, 200: isc.ImprintedOrderResponse},
        errors=(401, 403, 429, 503),
        produces=XML,
    ),
    Route(
        "DELETE",
        im.ORDERS,
        im.delete_order,
        Auth.NONE,
        'Cancel an unpaid order (it then shows deleted "true")' + SIGNED,
        TAG,
        query=isc.ImprintedOneQuery,
        responses={200: isc.ImprintedOrderResponse},
        errors=(401, 403, 404, 409, 429, 503),
        produces=XML,
    ),
    Route(
        "GET",
        im.ORDER,
        im.get_order,
        Auth.NONE,
        "One of the app's orders" + SIGNED,
        TAG,
        query=isc.ImprintedOneQuery,
        responses={200: isc.ImprintedOrderResponse},
        errors=(401, 403, 404, 429),
        produces=XML,
    ),
    Route(
        "GET",
        im.COUNT,
        im.count_orders,
        Auth.NONE,
        "Count the app's orders (the list's filters)" + SIGNED,
        TAG,
        query=isc.ImprintedListQuery,
        responses={200: isc.ImprintedCount},
        errors=(401, 403, 429),
        produces=XML,
    ),
    Route(
        "POST",
        im.APPS,
        im.create_app,
        Auth.TOKEN,
        "Create an Imprinted app: AppId and secret (shown once)",
        "integrations",
        body=isc.ImprintedAppName,
        responses={201: isc.ImprintedAppCreated},
        errors=(503,),
    ),
    Route(
        "GET",
        im.APPS,
        im.list_apps,
        Auth.TOKEN,
        "Imprinted apps (no secrets)",
        "integrations",
        responses={200: isc.ImprintedAppList},
    ),
    Route(
        "DELETE",
        f"{im.APPS}/{{app_id}}",
        im.revoke_app,
        Auth.TOKEN,
        "Revoke an Imprinted app",
        "integrations",
        responses={200: sc.Message},
        errors=(404, 503),
    ),
)
