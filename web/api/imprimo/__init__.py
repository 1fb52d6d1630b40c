"""Imprimo (seed 000) under /api/dev/: printers ("devices") and their print requests.

Its errors are `{"success": false, "error": "..."}` with a status of 400 or more; a failed
Bearer check is 401 with `WWW-Authenticate` (web.envelope, IMPRIMO_ERRORS).
"""

from web import envelope as ev
from web.api.imprimo.routes import ROUTES, owns
from web.api.imprimo.schemas import PATH_PARAMS, ImprimoError
from web.dialect import Dialect, Envelope, ErrorDocs

ENVELOPE = Envelope(
    owns=owns,
    fail=ev.imprimo_fail,
    fail_status=ev.imprimo_fail_status,
    docs=ErrorDocs(
        "ImprimoError", ImprimoError, ev.message_causes(ev.IMPRIMO_ERRORS), "`error`, for example:"
    ),
    auth_statuses=frozenset({401, 429}),
    path_param_errors=False,  # an id that names nothing is 404
    always=frozenset({503}),  # printing not running, storage failed
)
DIALECT = Dialect(
    "imprimo",
    ROUTES,
    ENVELOPE,
    path_params=PATH_PARAMS,
    tags={"printing": "Imprimo (seed 000) under /api/dev/: printers and print requests."},
)
