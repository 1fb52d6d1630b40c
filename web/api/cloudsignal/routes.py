"""The CloudSignal dialect's routes. Its errors use the table-tracker envelope (the seed
defines no error body), so the dialect brings no envelope of its own."""

from __future__ import annotations

from web import wire as sc
from web.api.cloudsignal import handlers as cs
from web.api.cloudsignal.schemas import (
    CloudSignal,
    IdQuery,
    KeyCreated,
    KeyList,
    KeyName,
    NewSubscription,
    Subscribed,
    SubscriptionList,
)
from web.routing import Auth, Route

TAG = "cloudsignal"
STATUS = "/cloudsignal/1.1/status/"
BASE = "/api/integrations/cloudsignal"
KEYS, SUBS = f"{BASE}/keys", f"{BASE}/subscriptions"

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        STATUS,
        cs.cloudsignal_status,
        Auth.NONE,
        "A CloudSignal v1.1 signal from a kitchen display (apikey in the body)",
        TAG,
        body=CloudSignal,
        responses={200: sc.Message},
        errors=(401, 403, 503),
        aliases=("/cloudsignal/1.1/status", "/1.1/status/", "/1.1/status"),
    ),
    Route(
        "POST",
        KEYS,
        cs.cloudsignal_create_key,
        Auth.TOKEN,
        "Create a CloudSignal apikey (shown once)",
        TAG,
        body=KeyName,
        responses={201: KeyCreated},
        errors=(503,),
    ),
    Route(
        "GET",
        KEYS,
        cs.cloudsignal_list_keys,
        Auth.TOKEN,
        "CloudSignal apikeys",
        TAG,
        responses={200: KeyList},
    ),
    Route(
        "DELETE",
        KEYS,
        cs.cloudsignal_revoke_key,
        Auth.TOKEN,
        "Revoke a CloudSignal apikey",
        TAG,
        query=IdQuery,
        responses={200: sc.Message},
        errors=(404, 503),
    ),
    Route(
        "POST",
        SUBS,
        cs.cloudsignal_subscribe,
        Auth.TOKEN,
        "Send CloudSignal signals to a URL",
        TAG,
        body=NewSubscription,
        responses={201: Subscribed, 200: Subscribed},
        errors=(503,),
    ),
    Route(
        "GET",
        SUBS,
        cs.cloudsignal_list_subscriptions,
        Auth.TOKEN,
        "CloudSignal receivers",
        TAG,
        responses={200: SubscriptionList},
    ),
    Route(
        "DELETE",
        SUBS,
        cs.cloudsignal_unsubscribe,
        Auth.TOKEN,
        "Stop sending CloudSignal signals to a URL",
        TAG,
        query=IdQuery,
        responses={200: sc.Message},
        errors=(404, 503),
    ),
)
