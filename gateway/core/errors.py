"""One error tree for the gateway, and the table that renders it in each dialect.

Services raise `GatewayError(Code.X)`; each web dialect looks the code up in its own table
(status, returnCode, message). A code missing from a dialect's table is a bug the tests catch.
"""

from __future__ import annotations

from enum import Enum


class Code(Enum):
    # authentication and tokens
    AUTH_MALFORMED = "auth_malformed"
    AUTH_INVALID = "auth_invalid"
    TOKEN_WINDOW_CLOSED = "token_window_closed"
    TOKEN_WINDOW_USED = "token_window_used"
    TOKEN_TOO_MANY_WAITING = "token_too_many_waiting"
    TOKEN_BAD_NAME = "token_bad_name"
    TOKEN_WAIT_TIMEOUT = "token_wait_timeout"
    TOKEN_BAD_TIMEOUT = "token_bad_timeout"
    TOKEN_TIMEOUT_RANGE = "token_timeout_range"
    TOKEN_NOT_FOUND = "token_not_found"
    API_UNAVAILABLE = "api_unavailable"
    TOO_MANY_FAILURES = "too_many_failures"
    # orders
    ORDER_NOT_FOUND = "order_not_found"
    BAD_ORDER_ID = "bad_order_id"
    BAD_UUID = "bad_uuid"
    MISSING_ORDER_NAME = "missing_order_name"
    BAD_ORDER_NAME = "bad_order_name"
    BAD_LOCATION_NAME = "bad_location_name"
    MISSING_ORDER_TYPE = "missing_order_type"
    BAD_ORDER_TYPE = "bad_order_type"
    BAD_JSON = "bad_json"
    # paging
    PAGING_UNAVAILABLE = "paging_unavailable"
    PAGING_IMPOSSIBLE = "paging_impossible"
    BAD_BOOLEAN = "bad_boolean"
    # settings, history, statistics
    UNKNOWN_SETTING = "unknown_setting"
    BAD_SETTING_VALUE = "bad_setting_value"
    BAD_TARGET_TIME = "bad_target_time"
    BAD_LIMIT = "bad_limit"
    BAD_OFFSET = "bad_offset"
    BAD_DATE = "bad_date"
    # radio
    TRACKER_NOT_FOUND = "tracker_not_found"
    BAD_TRACKER = "bad_tracker"
    BAD_PAIRING_TIMEOUT = "bad_pairing_timeout"
    # webhook clients
    MISSING_HTTP_CLIENT = "missing_http_client"
    BAD_HTTP_CLIENT = "bad_http_client"
    UNKNOWN_HTTP_CLIENT = "unknown_http_client"
    # printing (seed 000)
    PRINT_DEVICE_NOT_FOUND = "print_device_not_found"
    PRINT_REQUEST_NOT_FOUND = "print_request_not_found"
    PRINT_BAD_COMMAND = "print_bad_command"
    PRINT_BAD_DATA = "print_bad_data"
    PRINT_BAD_DEADLINE = "print_bad_deadline"
    PRINT_BAD_RESERVED = "print_bad_reserved"
    PRINT_BAD_REPORT_URL = "print_bad_report_url"
    PRINT_BAD_DEVICE = "print_bad_device"
    PRINT_DEVICE_EXISTS = "print_device_exists"
    PRINT_DEVICE_CONFIGURED = "print_device_configured"
    PRINT_NOT_AWAITING = "print_not_awaiting"
    PRINT_BAD_RESPONSE = "print_bad_response"
    PRINT_NO_STATION = "print_no_station"
    # order intake, items (integrations)
    ITEM_NOT_FOUND = "item_not_found"
    ITEM_BAD_TRANSITION = "item_bad_transition"
    ORDER_PAID = "order_paid"
    ORDER_CLOSED = "order_closed"
    ORDER_NAME_TAKEN = "order_name_taken"
    BAD_ORDER = "bad_order"
    # Imprinted (seed 001)
    REPLAYED = "replayed"
    STALE_TIMESTAMP = "stale_timestamp"
    BAD_XML = "bad_xml"
    BAD_PARAMETER = "bad_parameter"
    BAD_STATUS_FILTER = "bad_status_filter"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    # transport
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BODY_TOO_LARGE = "body_too_large"
    BODY_TIMEOUT = "body_timeout"
    MALFORMED_REQUEST = "malformed_request"
    FORBIDDEN_ORIGIN = "forbidden_origin"
    HOST_REFUSED = "host_refused"
    STORAGE_FAILED = "storage_failed"
    INTERNAL = "internal"


class GatewayError(Exception):
    """The root of every error a service reports to a client."""

    def __init__(self, code: Code, message: str | None = None) -> None:
        super().__init__(message or code.value)
        self.code = code
        self.detail = message


class ValidationFailed(GatewayError):
    """The request is malformed; nothing was changed."""


class NotFound(GatewayError):
    """The thing the request names does not exist."""


class AuthFailed(GatewayError):
    """The caller is not who it must be, or is not allowed yet."""


class Conflict(GatewayError):
    """The request is well-formed but the thing is not in a state that allows it."""


class Unavailable(GatewayError):
    """The gateway cannot do this right now (hardware missing, storage failing, stopping)."""
