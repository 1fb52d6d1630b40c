"""CloudSignal (seed 002): item signals from a kitchen display, apikeys, receivers."""

from web.api.cloudsignal.routes import ROUTES
from web.dialect import Dialect

# No envelope of its own: its errors are the gateway's table-tracker envelope.
DIALECT = Dialect("cloudsignal", ROUTES)
