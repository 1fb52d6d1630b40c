"""The OpenAPI 3.1 document, generated from the dialects and their pydantic models.

Each dialect (web.server.DIALECTS) says which operations exist, who may call them, which models
describe their parameters, bodies and answers, and how its error envelope is documented; this
module only walks them, with no case for any one dialect. The gateway
serves the committed copy, `web/openapi.json`; a test keeps it equal to `build_openapi()`.
Regenerate it with:

    .venv/bin/python -m web.openapi > web/openapi.json
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, TypeAdapter

from gateway import __version__
from web.dialect import Dialect, Dialects, Envelope
from web.routing import Auth, ResponseModels, Route
from web.server import DIALECTS

REF = "#/components/schemas/{model}"
OPENAPI_PATH = "/api/openapi.json"  # served by web.server, outside the route table
JSON = "application/json"
PATH_PARAM = re.compile(r"\{([^{}]+)\}")

DESCRIPTION = """\
Tablegate speaks the table-tracker LAN API: `/api/v2` and the legacy `/api/v1`.

Every table-tracker JSON answer is an envelope: `status` (the HTTP status again) and an integer \
`returnCode` (below 0: error; 1 to 999: data; 1000 and up: action acknowledged), plus either \
`message` (actions, errors) or a payload key (`activeorder`, `count` + `items`, `token`, \
`settings`, `statistics`). Timestamps are gateway local time, `YYYY-MM-DDTHH:MM:SS`.

Clients authenticate with `Authorization: Bearer <token>`; v1 also accepts HTTP Basic with \
the token as the user name and an empty password. A token comes from \
`GET /api/v2/accesstoken/generate?name=` while the gateway's button window is open, or from \
`POST /api/v2/accesstoken/generate` with a token.

Under `/api/dev/` the gateway speaks the Imprimo printing API (seed 000) with the same Bearer \
tokens: devices (printers) and their print requests. Its answers are `{"success": true, ...}`; \
its errors `{"success": false, "error": "..."}` with an HTTP status of 400 or more (the \
`ImprimoError` responses); times are Unix seconds. Imprimo paths also answer with the \
trailing slash added or removed (each operation says where).
"""

SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token (48 hex characters).",
    },
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "v1 only: the access token as the user name, empty password.",
    },
    "adminCookie": {
        "type": "http",
        "scheme": "bearer",
        "description": "The box-local admin cookie (the file `admin.cookie` in the data "
        "directory): only someone on the box can read it.",
    },
}

FEED = """\
Switching Protocols: the order feed. After authentication (the Authorization header, \
`?accesstoken=`, or `{"accesstoken": "..."}` as the first text frame) the gateway sends an \
`ACTIVE_ORDERS` frame (`count`, `items`, `seq`) or, with `?since=`, exactly the events after \
that `seq`; then one frame per change: the order object plus `type` (`NEW_ORDER` or as the \
setting `newOrderEventType` says, `ORDER_MODIFIED`, `ORDER_PAGED`, `ORDER_CLEARED`) and `seq`. \
An authentication or parameter error arrives as one `{status, returnCode, message}` frame, then \
the socket closes (4001 for authentication, 1008 otherwise)."""


class _Components:
    """components.schemas, filled as models are referenced; one name, one schema."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        known = self.schemas.setdefault(name, schema)
        if known != schema:
            raise ValueError(f"two different schemas are both named {name!r}")

    def hoist(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Move nested definitions to components.schemas; returns the rest."""
        schema = dict(schema)
        for name, sub in schema.pop("$defs", {}).items():
            self._add(name, sub)
        return schema

    def model(self, model: type[BaseModel]) -> dict[str, Any]:
        self._add(model.__name__, self.hoist(model.model_json_schema(ref_template=REF)))
        return {"$ref": REF.format(model=model.__name__)}

    def adapter(self, annotation: Any) -> dict[str, Any]:
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        return self.hoist(adapter.json_schema(ref_template=REF))


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None = None` in a query model means "may be left out", not "may be null"."""
    schema = dict(schema)
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del schema["anyOf"]
        schema = {**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **schema}
        if schema.get("default", 0) is None:
            del schema["default"]
    return schema


def _parameter(name: str, where: str, schema: dict[str, Any], required: bool) -> dict[str, Any]:
    schema = _non_null(schema)
    schema.pop("title", None)
    param: dict[str, Any] = {"name": name, "in": where, "required": required}
    if "description" in schema:
        param["description"] = schema.pop("description")
    param["schema"] = schema
    return param


def _parameters(
    route: Route, comp: _Components, path_params: dict[str, Any]
) -> list[dict[str, Any]]:
    params = [
        _parameter(name, "path", comp.adapter(path_params[name]), True)
        for name in PATH_PARAM.findall(route.path)
    ]
    if route.query is not None:
        schema = comp.hoist(route.query.model_json_schema(ref_template=REF))
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            params.append(_parameter(name, "query", prop, name in required))
    return params


def _content(models: ResponseModels, comp: _Components) -> dict[str, Any] | None:
    if models is None:
        return None
    if isinstance(models, tuple):
        schema: dict[str, Any] = {"oneOf": [comp.model(m) for m in models]}
    else:
        schema = comp.model(models)
    return {JSON: {"schema": schema}}


def _error_statuses(route: Route, env: Envelope) -> set[int]:
    statuses = set(route.errors) | env.always
    statuses.add(421)  # a Host that is not the box's own name or address (DNS rebinding)
    if route.auth in (Auth.TOKEN, Auth.ADMIN):
        statuses |= env.auth_statuses
    if route.body is not None:
        statuses |= {400, 413}  # not a JSON object; the body size limit
    if route.query is not None or (PATH_PARAM.search(route.path) and env.path_param_errors):
        statuses.add(400)  # parameters are validated
    return statuses


def _error_responses(comp: _Components, dialects: Dialects) -> dict[str, Any]:
    """One shared response per error status and envelope; its description lists the causes."""
    responses: dict[str, Any] = {}
    for env in dialects.envelopes:
        docs = env.docs
        ref = comp.model(docs.model)
        for status, lines in docs.causes.items():
            content: dict[str, Any] = {JSON: {"schema": ref}}
            if docs.also:
                content[docs.also] = {"schema": {"type": "string", "contentMediaType": docs.also}}
            responses[f"{docs.name}{status}"] = {
                "description": f"{HTTPStatus(status).phrase}. {docs.intro}\n" + "\n".join(lines),
                "content": content,
            }
    return responses


def _security(route: Route) -> list[dict[str, list[str]]]:
    if route.auth is Auth.TOKEN:
        schemes: list[dict[str, list[str]]] = [{"bearerAuth": []}]
        if route.basic:
            schemes.append({"basicAuth": []})
        return schemes
    if route.auth is Auth.ADMIN:
        return [{"adminCookie": []}]
    if route.auth is Auth.SOCKET:
        return [{"bearerAuth": []}, {}]  # or ?accesstoken=, or the first frame
    return []


def _operation_id(route: Route) -> str:
    area = route.path.split("/")[2]  # v1, v2, admin
    return f"{area}_{getattr(route.handler, '__name__', 'handler')}"


def _operation(
    route: Route, comp: _Components, errors: dict[str, Any], dialects: Dialects
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "tags": [route.tag],
        "security": _security(route),
    }
    if route.aliases:
        op["description"] = "Also answers at " + ", ".join(f"`{a}`" for a in route.aliases) + "."
    params = _parameters(route, comp, dialects.path_params())
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {JSON: {"schema": comp.model(route.body)}},
        }
    responses: dict[str, Any] = {}
    for status, models in route.responses.items():
        content = _content(models, comp)
        if route.produces is not None and 200 <= status < 300:
            # A second representation (XML) of the same answer, or the only one (PNG).
            content = (content or {}) | {
                route.produces: {"schema": {"type": "string", "contentMediaType": route.produces}}
            }
        response: dict[str, Any] = {
            "description": FEED if status == 101 else HTTPStatus(status).phrase
        }
        if content is not None:
            response["content"] = content
        responses[str(status)] = response
    env = dialects.envelope(route.path)
    for status in sorted(_error_statuses(route, env)):
        name = f"{env.docs.name}{status}"
        if name not in errors:
            raise ValueError(f"{route.method} {route.path}: no error code answers {status}")
        responses[str(status)] = {"$ref": f"#/components/responses/{name}"}
    if not route.responses:
        raise ValueError(f"{route.method} {route.path}: no success response documented")
    return op | {"responses": responses}


def build_openapi(dialects: tuple[Dialect, ...] = DIALECTS) -> dict[str, Any]:
    spoken = Dialects(dialects)
    routes = spoken.routes()
    tags = spoken.tags()
    comp = _Components()
    errors = _error_responses(comp, spoken)
    paths: dict[str, dict[str, Any]] = defaultdict(dict)
    ids: set[str] = set()
    for route in routes:
        op = _operation(route, comp, errors, spoken)
        if op["operationId"] in ids or route.method.lower() in paths[route.path]:
            raise ValueError(f"{route.method} {route.path} is in the route table twice")
        ids.add(op["operationId"])
        paths[route.path][route.method.lower()] = op
    paths[OPENAPI_PATH]["get"] = {
        "operationId": "openapi",
        "summary": "This document",
        "tags": ["gateway"],
        "security": [],
        "responses": {
            "200": {"description": "OK", "content": {JSON: {"schema": {"type": "object"}}}}
        },
    }
    used_tags = {r.tag for r in routes}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tablegate",
            "version": __version__,
            "description": DESCRIPTION,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": t, "description": tags[t]} if t in tags else {"name": t}
            for t in sorted(used_tags)
        ],
        "paths": dict(paths),
        "components": {
            "schemas": comp.schemas,
            "responses": errors,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def render(doc: dict[str, Any] | None = None) -> str:
    """The committed form: sorted keys, two-space indent, ASCII, a final newline."""
    return json.dumps(build_openapi() if doc is None else doc, sort_keys=True, indent=2) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
