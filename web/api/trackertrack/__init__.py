"""The table-tracker LAN API (seed 004): `/api/v2`, the legacy `/api/v1`, and the feeds.

Its envelope, `{status, returnCode, message}`, is also the gateway's default: it answers every
path no other dialect owns (unknown paths, the gateway's own admin and integration APIs).
"""

from web import envelope as ev
from web import wire
from web.api.trackertrack.requests import PATH_PARAMS
from web.api.trackertrack.routes import ROUTES
from web.dialect import Dialect, Envelope, ErrorDocs

TAGS = {
    "orders": "Active orders: start, locate, page, clear.",
    "history": "Orders including cleared ones, and today's statistics.",
    "gateway": "Liveness and runtime settings.",
    "webhooks": "Clients the gateway calls on every order change.",
    "tokens": "Access tokens and the button window.",
    "feed": "The WebSocket order feed.",
}
ENVELOPE = Envelope(
    owns=lambda path: True,
    fail=ev.table_fail,
    fail_status=ev.table_fail_status,
    docs=ErrorDocs("Error", wire.Message, ev.return_code_causes(ev.ERRORS), "returnCode:"),
)
DIALECT = Dialect("trackertrack", ROUTES, ENVELOPE, path_params=PATH_PARAMS, tags=TAGS)
