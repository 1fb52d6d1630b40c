"""Imprinted (seed 001): signed order requests, JSON or XML, and the apps' management.

Errors on the order paths come in the request's format, `{"error": {"code", "message"}}` or
`<error><code/><message/></error>` (handlers.fail); the app management under
/api/integrations/imprinted is the gateway's own API and keeps the default envelope.
"""

from web import envelope as ev
from web.api.imprinted import handlers as im
from web.api.imprinted.routes import ROUTES
from web.api.imprinted.schemas import AppIdParam, ImprintedError
from web.dialect import Dialect, Envelope, ErrorDocs

ENVELOPE = Envelope(
    owns=lambda path: path in im.PATHS,
    fail=im.fail,
    fail_status=im.fail_status,
    docs=ErrorDocs(
        "ImprintedError",
        ImprintedError,
        ev.code_causes(ev.IMPRINTED_ERRORS),
        "For example:",
        also="application/xml",
    ),
)
DIALECT = Dialect("imprinted", ROUTES, ENVELOPE, path_params={"app_id": AppIdParam})
