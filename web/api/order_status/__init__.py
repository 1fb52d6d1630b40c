"""Print API (seed 003): `GET /v1/orders/{id}` and its webhook receivers.

Its errors are the table-tracker envelope, except that a missing or malformed Authorization is
401 with `WWW-Authenticate: Bearer` (RFC 6750), not the table-tracker vendor's 400. The webhook
management under /api/integrations is the gateway's own API and keeps the default envelope.
"""

from gateway.core.errors import Code
from web import envelope as ev
from web import wire
from web.api.order_status.routes import ORDERS, ROUTES
from web.api.order_status.schemas import OrderId
from web.dialect import Dialect, Envelope, ErrorDocs

# The codes its routes can answer (the documented causes of each error status).
CODES = (
    Code.AUTH_MALFORMED,
    Code.AUTH_INVALID,
    Code.TOO_MANY_FAILURES,
    Code.BAD_ORDER_ID,
    Code.ORDER_NOT_FOUND,
    Code.NOT_FOUND,
    Code.METHOD_NOT_ALLOWED,
    Code.HOST_REFUSED,
    Code.API_UNAVAILABLE,
    Code.STORAGE_FAILED,
)
ENVELOPE = Envelope(
    owns=lambda path: path.startswith(ORDERS),
    fail=ev.printapi_fail,
    fail_status=ev.table_fail_status,
    docs=ErrorDocs(
        "PrintApiError",
        wire.Message,
        ev.return_code_causes({c: ev.PRINTAPI_ERRORS[c] for c in CODES}),
        "returnCode:",
    ),
    auth_statuses=frozenset({401, 429}),
)
DIALECT = Dialect("order_status", ROUTES, ENVELOPE, path_params={"order_id": OrderId})
