"""The gateway's own admin API (box-local token window, the outbox's deliveries)."""

from web.api.admin.routes import ROUTES
from web.api.admin.schemas import DeliveryId
from web.dialect import Dialect

# No envelope of its own: the table-tracker envelope answers its errors.
DIALECT = Dialect("admin", ROUTES, path_params={"delivery_id": DeliveryId})
