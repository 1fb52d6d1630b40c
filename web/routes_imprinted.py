"""Routes of the imprinted dialect, appended to web.routes.ROUTES (one table, auth, OpenAPI)."""

from __future__ import annotations

from web.routes import Route


def routes() -> list[Route]:
    return []
