"""The error envelopes of the two dialects, and the middleware that picks one by path.

- Table-tracker (`/api/v1`, `/api/v2`, everything else): `status` + `returnCode` + `message`
  or a payload key. `ERRORS` maps every gateway error code to its HTTP status, returnCode and
  message.
- Imprimo (seed 000, under `/api/dev/`): `{"success": false, "error": "..."}` with an HTTP
  status of 400 or more. `IMPRIMO_ERRORS` maps each code those routes can raise to its status
  and default message.

The middleware turns every failure (ours, aiohttp's 404/405/413, SQLite's, anything unexpected)
into the envelope of the path's dialect, so a client never sees an HTML error page.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.core.errors import (
    AuthFailed,
    Code,
    Conflict,
    GatewayError,
    NotFound,
    Unavailable,
    ValidationFailed,
)
from web.dialect import DIALECTS_KEY, Dialects

log = logging.getLogger(__name__)

MSG_NAME = "Must be a positive integer."
THROTTLE_RETRY_AFTER = 60
WAITING_RETRY_AFTER = 10  # the long-polls ahead answer within 120 s; no point in hammering
ERRORS: dict[Code, tuple[int, int, str]] = {
    Code.AUTH_MALFORMED: (400, -1, "Malformed or missing Authorization header."),
    Code.AUTH_INVALID: (401, -2, "Invalid access token."),
    Code.TOKEN_WINDOW_CLOSED: (403, -3, "Time window expired or gateway button not pressed."),
    Code.TOKEN_BAD_NAME: (400, -4, "Invalid token name."),
    # The contract's "closed" answer (clients drop their token and ask for a new press on -3),
    # with a message that says why: this press's tokens are all handed out.
    Code.TOKEN_WINDOW_USED: (
        403,
        -3,
        "Token window used up: every token of this press was handed out. "
        "Press the gateway button again.",
    ),
    Code.API_UNAVAILABLE: (503, -5, "API unavailable."),
    Code.ORDER_NOT_FOUND: (404, -6, "Order not found."),
    Code.BAD_ORDER_ID: (400, -7, "Invalid order identifier. Must be an order number or a uuid."),
    Code.MISSING_ORDER_NAME: (400, -8, f"Missing order name. {MSG_NAME}"),
    Code.BAD_ORDER_NAME: (400, -9, f"Invalid order name. {MSG_NAME}"),
    Code.BAD_LOCATION_NAME: (400, -10, f"Invalid location name. {MSG_NAME}"),
    Code.MISSING_ORDER_TYPE: (
        400,
        -11,
        "Order type missing from request. Must be either TO_GO or ON_PREMISES.",
    ),
    Code.BAD_ORDER_TYPE: (400, -12, "Order type invalid. Must be either TO_GO or ON_PREMISES."),
    Code.PAGING_UNAVAILABLE: (503, -13, "Paging unavailable: no radio can reach the tracker."),
    Code.PAGING_IMPOSSIBLE: (409, -14, "Paging impossible: no tracker is bound to this order."),
    Code.BAD_BOOLEAN: (400, -15, "Invalid boolean. Use true or false."),
    Code.BAD_PAIRING_TIMEOUT: (400, -16, "Invalid timeout. Must be an integer from 0 to 254."),
    Code.UNKNOWN_SETTING: (400, -20, "Unknown setting."),
    Code.BAD_SETTING_VALUE: (400, -21, "Invalid setting value."),
    Code.BAD_TARGET_TIME: (400, -22, "Invalid target_time. Must be seconds from 1 to 86400."),
    Code.BAD_LIMIT: (400, -23, "Invalid limit. Must be an integer from 1 to 100."),
    Code.BAD_OFFSET: (400, -24, "Invalid offset. Must be a non-negative integer."),
    Code.BAD_DATE: (400, -25, "Invalid date. Use YYYY-MM-DDTHH:MM:SS or YYYY-MM-DD."),
    Code.BAD_UUID: (400, -27, "Invalid uuid."),
    Code.MISSING_HTTP_CLIENT: (400, -28, "Missing http_client."),
    Code.BAD_HTTP_CLIENT: (400, -29, "Invalid http_client URL."),
    Code.UNKNOWN_HTTP_CLIENT: (404, -30, "Unknown http_client."),
    Code.BAD_JSON: (400, -31, "Invalid JSON body."),
    Code.TOKEN_WAIT_TIMEOUT: (408, -32, "Timed out waiting for the gateway button."),
    Code.TOKEN_BAD_TIMEOUT: (400, -33, "Invalid timeout. Must be an integer number of seconds."),
    Code.TOKEN_TIMEOUT_RANGE: (400, -34, "Timeout out of range. Must be from 1 to 120 seconds."),
    # Codes below are not in the vendor's public documentation: our choice, see docs/api.md.
    Code.TOKEN_NOT_FOUND: (404, -35, "Token not found."),
    Code.TRACKER_NOT_FOUND: (404, -36, "Tracker not found."),
    Code.BAD_TRACKER: (400, -37, "Invalid tracker."),
    Code.NOT_FOUND: (404, -40, "Unknown path."),
    Code.METHOD_NOT_ALLOWED: (405, -41, "Method not allowed on this path."),
    Code.BODY_TOO_LARGE: (413, -42, "Request body too large."),
    Code.BODY_TIMEOUT: (408, -47, "Request body not received in time."),
    Code.MALFORMED_REQUEST: (400, -48, "Malformed HTTP request."),
    Code.FORBIDDEN_ORIGIN: (403, -43, "Cross-origin request refused."),
    Code.TOO_MANY_FAILURES: (429, -44, "Too many failed authentications; retry later."),
    Code.TOKEN_TOO_MANY_WAITING: (
        503,
        -45,
        "Too many clients are waiting for the gateway button; retry later.",
    ),
    Code.HOST_REFUSED: (
        421,
        -46,
        "Unknown Host: this gateway answers only to its own name or address "
        "(or a name in its allowed_hosts setting).",
    ),
    Code.STORAGE_FAILED: (503, -5, "Storage failed; nothing was written. Retry shortly."),
}

IMPRIMO_ERRORS: dict[Code, tuple[int, str]] = {
    # Seed 000 names only "a status of 400 or more"; the statuses are ours (docs/api.md).
    Code.AUTH_MALFORMED: (
        401,
        "Missing or malformed Authorization header: send Authorization: Bearer <api-key>.",
    ),
    Code.AUTH_INVALID: (401, "Invalid API key."),
    Code.TOO_MANY_FAILURES: (429, "Too many failed authentications; retry later."),
    Code.BAD_JSON: (400, "Invalid JSON body."),
    Code.BAD_LIMIT: (400, "limit must be a positive integer (values above 100 are capped)."),
    Code.BAD_OFFSET: (400, "offset must be an integer from 0 to 1000000000."),
    Code.PRINT_BAD_COMMAND: (400, "Unknown command."),
    Code.PRINT_BAD_DATA: (400, "Invalid data for this command."),
    Code.PRINT_BAD_DEADLINE: (400, "Invalid deadline."),
    Code.PRINT_BAD_RESERVED: (400, "reserved must be at most 60 ASCII characters, or null."),
    Code.PRINT_BAD_REPORT_URL: (400, "Invalid reportUrl."),
    Code.PRINT_BAD_DEVICE: (400, "Invalid device."),
    Code.PRINT_BAD_RESPONSE: (400, "Invalid answer: accepted (boolean) and time (minutes)."),
    Code.PRINT_NO_STATION: (400, "No printer serves this station."),
    Code.PRINT_DEVICE_NOT_FOUND: (404, "Device not found."),
    Code.PRINT_REQUEST_NOT_FOUND: (404, "Request not found."),
    Code.NOT_FOUND: (404, "Unknown path."),
    Code.METHOD_NOT_ALLOWED: (405, "Method not allowed on this path."),
    Code.HOST_REFUSED: (
        421,
        "Unknown Host: this gateway answers only to its own name or "
        "address (or a name in its allowed_hosts setting).",
    ),
    Code.PRINT_DEVICE_EXISTS: (409, "A device with this id already exists."),
    Code.PRINT_DEVICE_CONFIGURED: (409, "The device is configured in the settings file."),
    Code.PRINT_NOT_AWAITING: (409, "The request is not waiting for an answer."),
    Code.BODY_TOO_LARGE: (413, "Request body too large."),
    Code.BODY_TIMEOUT: (408, "Request body not received in time."),
    Code.MALFORMED_REQUEST: (400, "Malformed HTTP request."),
    Code.API_UNAVAILABLE: (503, "Printing is unavailable right now; retry shortly."),
    Code.STORAGE_FAILED: (503, "Storage failed; nothing was written. Retry shortly."),
}
# Imprinted (seed 001): code -> (HTTP status, default message). Others keep their class status.
IMPRINTED_ERRORS: dict[Code, tuple[int, str]] = {
    Code.AUTH_MALFORMED: (401, "Missing AppId or Signature."),
    Code.AUTH_INVALID: (403, "Invalid AppId or Signature."),
    Code.STALE_TIMESTAMP: (403, "X-Imprinted-Timestamp is outside the allowed window."),
    Code.REPLAYED: (403, "This signed request was already received."),
    Code.TOO_MANY_FAILURES: (429, "Too many failed authentications; retry later."),
    Code.BAD_JSON: (400, "Invalid JSON body."),
    Code.BAD_XML: (400, "Invalid XML body."),
    Code.BAD_ORDER: (400, "Invalid order."),
    Code.BAD_PARAMETER: (400, "Invalid parameter."),
    Code.BAD_LIMIT: (400, "limit must be an integer from 1 to 250."),
    Code.BAD_DATE: (400, "Invalid date."),
    Code.BAD_ORDER_ID: (400, "Invalid order id."),
    Code.BAD_STATUS_FILTER: (400, "Unknown status."),
    Code.ORDER_NOT_FOUND: (404, "Order not found."),
    Code.NOT_FOUND: (404, "Not found."),
    Code.METHOD_NOT_ALLOWED: (405, "Method not allowed on this path."),
    Code.HOST_REFUSED: (421, "Unknown Host: not this gateway's name or address."),
    Code.ORDER_PAID: (409, "A paid order cannot be deleted."),
    Code.ORDER_CLOSED: (409, "The order is already closed."),
    Code.ORDER_NAME_TAKEN: (409, "Order number taken."),
    Code.BODY_TOO_LARGE: (413, "Request body too large."),
    Code.BODY_TIMEOUT: (408, "Request body not received in time."),
    Code.MALFORMED_REQUEST: (400, "Malformed HTTP request."),
    Code.UNSUPPORTED_MEDIA_TYPE: (415, "Content-Type must be application/json or application/xml."),
    Code.API_UNAVAILABLE: (503, "Unavailable right now; retry shortly."),
    Code.STORAGE_FAILED: (503, "Storage failed; nothing was written. Retry shortly."),
    Code.INTERNAL: (500, "Internal error."),
}

# Print API (seed 003) answers in the table-tracker envelope, but a missing or malformed
# Authorization is 401 with `WWW-Authenticate: Bearer` (RFC 6750), not the vendor's 400.
PRINTAPI_ERRORS: dict[Code, tuple[int, int, str]] = {
    **ERRORS,
    Code.AUTH_MALFORMED: (
        401,
        -1,
        "Missing or malformed Authorization header: send Authorization: Bearer <token>.",
    ),
}
RETRY_SOON = (Code.API_UNAVAILABLE, Code.STORAGE_FAILED)


def reply(status: int, return_code: int, **payload: Any) -> web.Response:
    body = {"status": status, "returnCode": return_code, **payload}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_body(
    code: Code, detail: str | None = None, table: Mapping[Code, tuple[int, int, str]] = ERRORS
) -> dict[str, Any]:
    status, rc, message = table[code]
    return {"status": status, "returnCode": rc, "message": detail or message}


def error_reply(
    code: Code, detail: str | None = None, table: Mapping[Code, tuple[int, int, str]] = ERRORS
) -> web.Response:
    body = error_body(code, detail, table)
    resp = reply(body["status"], body["returnCode"], message=body["message"])
    return _retry_after(resp, code)


def _retry_after(resp: web.Response, code: Code) -> web.Response:
    if code in RETRY_SOON:
        resp.headers["Retry-After"] = "2"
    elif code is Code.TOO_MANY_FAILURES:
        resp.headers["Retry-After"] = str(THROTTLE_RETRY_AFTER)
    elif code is Code.TOKEN_TOO_MANY_WAITING:
        resp.headers["Retry-After"] = str(WAITING_RETRY_AFTER)
    return resp


# -- Imprimo (seed 000) ---------------------------------------------------------------------


def imprimo_reply(status: int, error: str) -> web.Response:
    return web.Response(
        body=orjson.dumps({"success": False, "error": error}),
        status=status,
        content_type="application/json",
    )


def imprimo_status(code: Code) -> tuple[int, str]:
    """Status and default message; a code the table lacks keeps its table-tracker status."""
    if code in IMPRIMO_ERRORS:
        return IMPRIMO_ERRORS[code]
    status, _, message = ERRORS.get(code, (500, 0, "Internal error."))
    return status, message


def imprimo_error_reply(code: Code, detail: str | None = None) -> web.Response:
    status, message = imprimo_status(code)
    resp = imprimo_reply(status, detail or message)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="tablegate"'
    return _retry_after(resp, code)


# -- the renderers the dialects name ----------------------------------------------------------


def table_fail(
    request: web.BaseRequest, code: Code, detail: str | None, status: int
) -> web.Response:
    """Table-tracker: `{status, returnCode, message}`."""
    if code not in ERRORS:  # a code of another dialect's service: its class decides
        return reply(status, -status, message=detail or code.value)
    return error_reply(code, detail)


def table_fail_status(
    request: web.BaseRequest, status: int, reason: str, code: Code
) -> web.Response:
    return reply(status, -5 if code is Code.INTERNAL else -status, message=reason)


def printapi_fail(
    request: web.BaseRequest, code: Code, detail: str | None, status: int
) -> web.Response:
    """Print API: the table-tracker envelope; every 401 says how to authenticate."""
    if code not in PRINTAPI_ERRORS:
        resp = reply(status, -status, message=detail or code.value)
    else:
        resp = error_reply(code, detail, PRINTAPI_ERRORS)
    if resp.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="tablegate"'
    return resp


def imprimo_fail(
    request: web.BaseRequest, code: Code, detail: str | None, status: int
) -> web.Response:
    return imprimo_error_reply(code, detail)


def imprimo_fail_status(
    request: web.BaseRequest, status: int, reason: str, code: Code
) -> web.Response:
    return imprimo_reply(status, reason)


# -- the causes each error response documents (web.openapi) ----------------------------------


def return_code_causes(table: Mapping[Code, tuple[int, int, str]]) -> dict[int, tuple[str, ...]]:
    by_status: dict[int, list[str]] = defaultdict(list)
    for status, rc, message in sorted(table.values(), key=lambda e: (e[0], -e[1])):
        line = f"- `{rc}`: {message}"
        if line not in by_status[status]:
            by_status[status].append(line)
    return {status: tuple(lines) for status, lines in by_status.items()}


def message_causes(table: Mapping[Code, tuple[int, str]]) -> dict[int, tuple[str, ...]]:
    by_status: dict[int, list[str]] = defaultdict(list)
    for status, message in sorted(table.values()):
        by_status[status].append(f"- {message}")
    return {status: tuple(lines) for status, lines in by_status.items()}


def code_causes(table: Mapping[Code, tuple[int, str]]) -> dict[int, tuple[str, ...]]:
    by_status: dict[int, list[str]] = defaultdict(list)
    for code, (status, message) in sorted(table.items(), key=lambda e: e[1]):
        by_status[status].append(f"- `{code.value}`: {message}")
    return {status: tuple(lines) for status, lines in by_status.items()}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_CLASS_STATUS: tuple[tuple[type[GatewayError], int], ...] = (
    (ValidationFailed, 400),
    (AuthFailed, 401),
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
)


def class_status(exc: GatewayError | None) -> int:
    for cls, status in _CLASS_STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def fail_reply(
    request: web.BaseRequest,
    code: Code,
    detail: str | None = None,
    status: int = 400,
    *,
    path: str | None = None,
    dialects: Dialects | None = None,
) -> web.Response:
    """The error `code` in the envelope of the dialect that owns its path (by default the
    request's); `dialects` by default the application's."""
    if dialects is None:
        dialects = request.app[DIALECTS_KEY]  # type: ignore[attr-defined]
    return dialects.fail(request, code, detail, status, path=path)


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        return fail_reply(request, exc.code, exc.detail, class_status(exc))
    except web.HTTPRequestEntityTooLarge:
        return fail_reply(request, Code.BODY_TOO_LARGE)
    except web.HTTPNotFound:
        return fail_reply(request, Code.NOT_FOUND)
    except web.HTTPMethodNotAllowed as exc:
        resp = fail_reply(request, Code.METHOD_NOT_ALLOWED)
        resp.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return resp
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _status_reply(request, exc.status, exc.reason)
        raise
    except (ConnectionResetError, TimeoutError):
        raise
    except sqlite3.Error:
        # A job's own SQLite error (disk full, I/O error): its transaction was rolled back.
        log.exception("storage error on %s %s", request.method, request.path)
        return fail_reply(request, Code.STORAGE_FAILED)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _status_reply(request, 500, "Internal error.", Code.INTERNAL)


def _status_reply(
    request: web.Request, status: int, reason: str, code: Code = Code.NOT_FOUND
) -> web.Response:
    """An HTTP status with no gateway code of its own (aiohttp's 4xx, an unexpected 500)."""
    return request.app[DIALECTS_KEY].fail_status(request, status, reason, code)
