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
from collections.abc import Awaitable, Callable
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
        403, -3, "Token window used up: every token of this press was handed out. "
                 "Press the gateway button again."),
    Code.API_UNAVAILABLE: (503, -5, "API unavailable."),
    Code.ORDER_NOT_FOUND: (404, -6, "Order not found."),
    Code.BAD_ORDER_ID: (400, -7, "Invalid order identifier. Must be an order number or a uuid."),
    Code.MISSING_ORDER_NAME: (400, -8, f"Missing order name. {MSG_NAME}"),
    Code.BAD_ORDER_NAME: (400, -9, f"Invalid order name. {MSG_NAME}"),
    Code.BAD_LOCATION_NAME: (400, -10, f"Invalid location name. {MSG_NAME}"),
    Code.MISSING_ORDER_TYPE: (
        400, -11, "Order type missing from request. Must be either TO_GO or ON_PREMISES."),
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
        503, -45, "Too many clients are waiting for the gateway button; retry later."),
    Code.HOST_REFUSED: (
        421, -46, "Unknown Host: this gateway answers only to its own name or address "
                  "(or a name in its allowed_hosts setting)."),
    Code.STORAGE_FAILED: (503, -5, "Storage failed; nothing was written. Retry shortly."),
}

IMPRIMO_PREFIX = "/api/dev/"
IMPRIMO_ERRORS: dict[Code, tuple[int, str]] = {
    # Seed 000 names only "a status of 400 or more"; the statuses are ours (docs/api.md).
    Code.AUTH_MALFORMED: (401, "Missing or malformed Authorization header: send "
                               "Authorization: Bearer <api-key>."),
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
    Code.HOST_REFUSED: (421, "Unknown Host: this gateway answers only to its own name or "
                             "address (or a name in its allowed_hosts setting)."),
    Code.PRINT_DEVICE_EXISTS: (409, "A device with this id already exists."),
    Code.PRINT_DEVICE_CONFIGURED: (409, "The device is configured in the settings file."),
    Code.PRINT_NOT_AWAITING: (409, "The request is not waiting for an answer."),
    Code.BODY_TOO_LARGE: (413, "Request body too large."),
    Code.BODY_TIMEOUT: (408, "Request body not received in time."),
    Code.MALFORMED_REQUEST: (400, "Malformed HTTP request."),
    Code.API_UNAVAILABLE: (503, "Printing is unavailable right now; retry shortly."),
    Code.STORAGE_FAILED: (503, "Storage failed; nothing was written. Retry shortly."),
}
RETRY_SOON = (Code.API_UNAVAILABLE, Code.STORAGE_FAILED)


def reply(status: int, return_code: int, **payload: Any) -> web.Response:
    body = {"status": status, "returnCode": return_code, **payload}
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json"
    )


def error_body(code: Code, detail: str | None = None) -> dict[str, Any]:
    status, rc, message = ERRORS[code]
    return {"status": status, "returnCode": rc, "message": detail or message}


def error_reply(code: Code, detail: str | None = None) -> web.Response:
    body = error_body(code, detail)
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


def is_imprimo(path: str) -> bool:
    return path.startswith(IMPRIMO_PREFIX) or path == IMPRIMO_PREFIX[:-1]


def imprimo_reply(status: int, error: str) -> web.Response:
    return web.Response(body=orjson.dumps({"success": False, "error": error}), status=status,
                        content_type="application/json")


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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A dialect's error renderer: (request, code, detail, http status of the error class) -> reply.
Fail = Callable[[web.Request, Code, str | None, int], web.Response]
_DIALECTS: list[tuple[Callable[[str], bool], Fail]] = []


def register_dialect(matches: Callable[[str], bool], fail: Fail) -> None:
    """Errors on paths that `matches` are answered by `fail` in that dialect's own envelope."""
    _DIALECTS.append((matches, fail))


_CLASS_STATUS: tuple[tuple[type[GatewayError], int], ...] = (
    (ValidationFailed, 400), (AuthFailed, 401), (NotFound, 404), (Conflict, 409),
    (Unavailable, 503))


def class_status(exc: GatewayError | None) -> int:
    for cls, status in _CLASS_STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def fail_reply(
    request: web.BaseRequest, code: Code, detail: str | None = None, status: int = 400,
    *, path: str | None = None,
) -> web.Response:
    """The error `code` in the envelope of the dialect its path (by default the request's)
    belongs to."""
    path = request.path if path is None else path
    dialect = next((f for matches, f in _DIALECTS if matches(path)), None)
    if dialect is not None:
        # A parser-level error has a bare BaseRequest: the renderers only read its headers.
        return dialect(request, code, detail, ERRORS.get(code, (status,))[0])  # type: ignore[arg-type]
    if is_imprimo(path):
        return imprimo_error_reply(code, detail)
    if code not in ERRORS:  # a code of another dialect's service: its class decides
        return reply(status, -status, message=detail or code.value)
    return error_reply(code, detail)


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
        return _status_reply(request, 500, "Internal error.", Code.INTERNAL, -5)


def _status_reply(request: web.Request, status: int, reason: str, code: Code = Code.NOT_FOUND,
                  return_code: int | None = None) -> web.Response:
    """An HTTP status with no gateway code of its own (aiohttp's 4xx, an unexpected 500)."""
    dialect = next((f for matches, f in _DIALECTS if matches(request.path)), None)
    if dialect is not None:
        return dialect(request, code, reason, status)
    if is_imprimo(request.path):
        return imprimo_reply(status, reason)
    return reply(status, -status if return_code is None else return_code, message=reason)
