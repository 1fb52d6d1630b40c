"""The Print API dialect's routes (seed 003): an order's status, and the receivers of the
thin status webhooks."""

from __future__ import annotations

from web import wire as sc
from web.api.order_status import handlers as pa
from web.api.order_status.schemas import (
    IdQuery,
    NewWebhook,
    PrintApiOrder,
    WebhookList,
    WebhookSubscribed,
)
from web.routing import Auth, Route

TAG = "printapi"
ORDERS = "/v1/orders/"
HOOKS = "/api/integrations/webhooks"

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        ORDERS + "{order_id}",
        pa.get_order,
        Auth.TOKEN,
        "Print API: an order's status and data",
        TAG,
        responses={200: PrintApiOrder},
        errors=(404,),
    ),
    Route(
        "POST",
        HOOKS,
        pa.subscribe,
        Auth.TOKEN,
        "Send Print API status webhooks to a URL",
        TAG,
        body=NewWebhook,
        responses={201: WebhookSubscribed, 200: WebhookSubscribed},
        errors=(503,),
    ),
    Route(
        "GET",
        HOOKS,
        pa.list_subscriptions,
        Auth.TOKEN,
        "Print API webhook receivers",
        TAG,
        responses={200: WebhookList},
    ),
    Route(
        "DELETE",
        HOOKS,
        pa.unsubscribe,
        Auth.TOKEN,
        "Stop sending Print API webhooks to a receiver",
        TAG,
        query=IdQuery,
        responses={200: sc.Message},
        errors=(404, 503),
    ),
)
