"""Rows of the printing aggregate: devices and print requests (seed 000)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from gateway.core.printing import (
    Command,
    Device,
    DeviceStatus,
    ErrorCode,
    PrintRequest,
    ProcessStatus,
    Report,
    ReportError,
    ReportStatus,
    RequestError,
    Source,
)

_DEVICE_COLS = (
    "id, name, address, station, paper, source, date_created, status, status_detail, "
    "status_date, is_online, date_last_seen, password, phone_number"
)
_REQUEST_COLS = (
    "id, device_id, date_created, deadline, reserved, command, data, station, "
    "order_uuid, report_url, process_status, process_status_date, date_sent, "
    "output_data, date_received, error, attempts, delivered_once, report"
)


def _device(row: tuple[Any, ...]) -> Device:
    (
        did,
        name,
        address,
        station,
        paper,
        source,
        created,
        status,
        detail,
        status_date,
        online,
        seen,
        password,
        phone,
    ) = row
    return Device(
        did,
        name,
        address,
        station,
        paper,
        Source(source),
        created,
        DeviceStatus(status) if status else None,
        detail,
        status_date,
        bool(online),
        seen,
        password,
        phone,
    )


def load_devices(conn: sqlite3.Connection) -> list[Device]:
    rows = conn.execute(
        f"SELECT {_DEVICE_COLS} FROM devices WHERE removed IS NULL ORDER BY date_created, id"
    )
    return [_device(r) for r in rows]


def save_device(conn: sqlite3.Connection, d: Device) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO devices ({_DEVICE_COLS}, removed) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL)",
        (
            d.id,
            d.name,
            d.address,
            d.station,
            d.paper,
            d.source.value,
            d.date_created,
            d.status.value if d.status else None,
            d.status_detail,
            d.status_date,
            int(d.is_online),
            d.date_last_seen,
            d.password,
            d.phone_number,
        ),
    )


def remove_device(conn: sqlite3.Connection, device_id: str, now: float) -> None:
    # Kept (marked) rather than deleted: archived requests still name it.
    conn.execute("UPDATE devices SET removed = ? WHERE id = ?", (now, device_id))


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _unjson(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def error_dict(e: RequestError | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {
        "processStatus": e.process_status.value,
        "code": e.code.value,
        "message": e.message,
        "dateCreated": e.date_created,
    }


def _error(text: str | None) -> RequestError | None:
    d = _unjson(text)
    if d is None:
        return None
    return RequestError(
        ProcessStatus(d["processStatus"]), ErrorCode(d["code"]), d["message"], d["dateCreated"]
    )


def report_dict(r: Report) -> dict[str, Any]:
    err = (
        None
        if r.error is None
        else {
            "code": r.error.code.value,
            "message": r.error.message,
            "dateCreated": r.error.date_created,
        }
    )
    return {
        "enabled": r.enabled,
        "attemps": r.attempts,
        "status": r.status.value,
        "statusDate": r.status_date,
        "error": err,
    }


def _report(text: str) -> Report:
    d = orjson.loads(text)
    e = d.get("error")
    err = None if e is None else ReportError(ErrorCode(e["code"]), e["message"], e["dateCreated"])
    return Report(d["enabled"], d["attemps"], ReportStatus(d["status"]), d["statusDate"], err)


def _request(row: tuple[Any, ...]) -> PrintRequest:
    (
        rid,
        device_id,
        created,
        deadline,
        reserved,
        command,
        data,
        station,
        order_uuid,
        report_url,
        status,
        status_date,
        sent,
        output,
        received,
        error,
        attempts,
        delivered,
        report,
    ) = row
    return PrintRequest(
        rid,
        device_id,
        created,
        deadline,
        reserved,
        Command(command),
        _unjson(data),
        ProcessStatus(status),
        status_date,
        _report(report),
        station,
        order_uuid,
        report_url,
        sent,
        _unjson(output),
        received,
        _error(error),
        attempts,
        bool(delivered),
    )


def save_request(conn: sqlite3.Connection, r: PrintRequest) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO print_requests ({_REQUEST_COLS}) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            r.id,
            r.device_id,
            r.date_created,
            r.deadline,
            r.reserved,
            r.command.value,
            _json(r.data),
            r.station,
            r.order_uuid,
            r.report_url,
            r.process_status.value,
            r.process_status_date,
            r.date_sent,
            _json(r.output_data),
            r.date_received,
            _json(error_dict(r.error)),
            r.attempts,
            int(r.delivered_once),
            orjson.dumps(report_dict(r.report)).decode(),
        ),
    )


def save_report(conn: sqlite3.Connection, request_id: str, report: Report) -> None:
    conn.execute(
        "UPDATE print_requests SET report = ? WHERE id = ?",
        (orjson.dumps(report_dict(report)).decode(), request_id),
    )


def load_open_requests(conn: sqlite3.Connection) -> list[PrintRequest]:
    rows = conn.execute(
        f"SELECT {_REQUEST_COLS} FROM print_requests "
        "WHERE process_status != 'archived' ORDER BY deadline, date_created"
    )
    return [_request(r) for r in rows]


def load_request(conn: sqlite3.Connection, device_id: str, request_id: str) -> PrintRequest | None:
    row = conn.execute(
        f"SELECT {_REQUEST_COLS} FROM print_requests WHERE id = ? AND device_id = ?",
        (request_id, device_id),
    ).fetchone()
    return None if row is None else _request(row)


def load_request_by_id(conn: sqlite3.Connection, request_id: str) -> PrintRequest | None:
    row = conn.execute(
        f"SELECT {_REQUEST_COLS} FROM print_requests WHERE id = ?", (request_id,)
    ).fetchone()
    return None if row is None else _request(row)


def page_requests(
    conn: sqlite3.Connection, device_id: str, limit: int, offset: int
) -> tuple[list[PrintRequest], int]:
    """Newest first, and the total for the device."""
    (total,) = conn.execute(
        "SELECT count(*) FROM print_requests WHERE device_id = ?", (device_id,)
    ).fetchone()
    rows = conn.execute(
        f"SELECT {_REQUEST_COLS} FROM print_requests WHERE device_id = ? "
        "ORDER BY date_created DESC, id DESC LIMIT ? OFFSET ?",
        (device_id, limit, offset),
    )
    return [_request(r) for r in rows], total
